//! A small, deterministic mutation fuzzer shared by the fuzz tests of every crate
//! (graph files, ONNX models, CIFAR-10 batches, pickles, images).
//!
//! Each case takes a seed input (a real file) and applies 1–4 mutations: truncate, flip a
//! byte, insert a token that parsers find hard (huge numbers, `null`, brackets, …), delete a
//! span, or duplicate a span. A fixed seed makes every run the same, so a failure
//! reproduces with its case number. The number of cases comes from
//! `QUANTGRAPH_FUZZ_CASES` (CI runs the small default; a long local run sets millions):
//!
//! ```text
//! QUANTGRAPH_FUZZ_CASES=1000000 cargo test --release -p quantgraph-nodes --test files fuzz
//! ```
//!
//! Why not cargo-fuzz: it needs a nightly toolchain and a libFuzzer build, which neither CI
//! nor a newcomer's `./test.sh` has; these harnesses run everywhere `cargo test` does.

/// Cases to run: `QUANTGRAPH_FUZZ_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("QUANTGRAPH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deterministic mutator (xorshift64).
pub struct Mutator {
    state: u64,
    tokens: Vec<Vec<u8>>,
}

impl Mutator {
    /// A mutator whose inserted tokens are `tokens` plus a few hard numbers and bytes.
    pub fn new(seed: u64, tokens: &[&[u8]]) -> Self {
        let mut all: Vec<Vec<u8>> = tokens.iter().map(|t| t.to_vec()).collect();
        for t in [
            &b"18446744073709551615"[..],
            b"18446744073709551616",
            b"-1",
            b"1e309",
            b"NaN",
            b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x80",
            b"\x7f\xff\xff\xff\xff\xff\xff\xff",
        ] {
            all.push(t.to_vec());
        }
        Self { state: seed.max(1), tokens: all }
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A mutated copy of `seed`.
    pub fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        let mutations = 1 + self.below(4);
        for _ in 0..mutations {
            let len = bytes.len().max(1);
            let at = self.below(len).min(bytes.len());
            match self.below(6) {
                0 => bytes.truncate(at),
                1 | 2 => {
                    if let Some(b) = bytes.get_mut(at) {
                        *b = self.next_u64() as u8;
                    }
                }
                3 => {
                    let pick = self.below(self.tokens.len());
                    let t = self.tokens[pick].clone();
                    bytes.splice(at..at, t);
                }
                4 => {
                    let end = (at + self.below(40)).min(bytes.len());
                    bytes.drain(at..end);
                }
                _ => {
                    let from = self.below(len).min(bytes.len());
                    let end = (from + self.below(64)).min(bytes.len());
                    let chunk = bytes[from..end].to_vec();
                    bytes.splice(at..at, chunk);
                }
            }
        }
        bytes
    }
}
