//! What several of the application's integration tests share: which reference fits the CPU
//! they run on.
#![allow(dead_code)]

/// Whether ONNX Runtime's integer kernels here have VNNI (without, its u8s8 kernels
/// saturate, so models with uint8 activations predict otherwise).
pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni");
    #[cfg(not(target_arch = "x86_64"))]
    return true;
}

/// Whether ONNX Runtime's float kernels here are its AVX-512 ones (those of the CPU that made
/// the references; its AVX2 ones round otherwise).
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return true;
}

/// The reference figures of `model` for this CPU: `reference["models"]` was recorded on a
/// CPU with VNNI (`models/evaluate.py`, `models/foreign.py`), `reference["without_vnni"]`
/// on one without (`models/reference_without_vnni.py`).
pub fn reference_on_this_cpu<'a>(reference: &'a serde_json::Value, model: &str) -> &'a serde_json::Value {
    let without = &reference["without_vnni"]["models"][model];
    if has_vnni() || without.is_null() {
        &reference["models"][model]
    } else {
        without
    }
}
