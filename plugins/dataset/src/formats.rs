//! Reading images and labels from CIFAR-10 (binary and python layouts) and image folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quantgraph_nodes::value::PreviewImage;
use quantgraph_nodes::{EvalContext, NodeError};
use serde_pickle::{DeOptions, HashableValue, Value as Pickle};

/// Bytes in one record of the CIFAR-10 binary layout: a label, then 3×32×32 pixels.
pub const RECORD_BYTES: usize = 3073;
const PIXELS: usize = 3072;

pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Which files to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CifarBinary { train: bool },
    CifarPython { train: bool },
    ImageFolder { train: bool },
}

impl Source {
    pub fn parse(format: &str, split: &str) -> Self {
        let train = split == "train";
        match format {
            "cifar10-python" => Source::CifarPython { train },
            "image-folder" => Source::ImageFolder { train },
            _ => Source::CifarBinary { train },
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Source::CifarBinary { train: false } => "CIFAR-10 binary, test split",
            Source::CifarBinary { train: true } => "CIFAR-10 binary, train split",
            Source::CifarPython { train: false } => "CIFAR-10 python, test split",
            Source::CifarPython { train: true } => "CIFAR-10 python, train split",
            Source::ImageFolder { train: false } => "image folder, test split",
            Source::ImageFolder { train: true } => "image folder, train split",
        }
    }

    fn file_names(&self) -> Vec<String> {
        match self {
            Source::CifarBinary { train: false } => vec!["test_batch.bin".into()],
            Source::CifarBinary { train: true } => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Source::CifarPython { train: false } => vec!["test_batch".into()],
            Source::CifarPython { train: true } => (1..=5).map(|i| format!("data_batch_{i}")).collect(),
            Source::ImageFolder { .. } => Vec::new(),
        }
    }

    /// The folder that holds the files: `dir`, or the official archive's subfolder in it.
    pub fn folder(&self, dir: &Path) -> PathBuf {
        let sub = match self {
            Source::CifarBinary { .. } => "cifar-10-batches-bin",
            Source::CifarPython { .. } => "cifar-10-batches-py",
            Source::ImageFolder { train } => {
                let split = dir.join(if *train { "train" } else { "test" });
                return if split.is_dir() { split } else { dir.to_path_buf() };
            }
        };
        let first = self.file_names().into_iter().next().unwrap_or_default();
        if !dir.join(&first).exists() && dir.join(sub).join(&first).exists() {
            dir.join(sub)
        } else {
            dir.to_path_buf()
        }
    }

    /// Files whose identity goes into the cache key.
    pub fn identity_files(&self, dir: &Path) -> Vec<PathBuf> {
        let folder = self.folder(dir);
        match self {
            Source::ImageFolder { .. } => vec![folder],
            _ => self.file_names().into_iter().map(|f| folder.join(f)).collect(),
        }
    }
}

/// Which samples to take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// 0: all.
    pub count: usize,
    /// 0: off; else this many of each class.
    pub per_class: usize,
    pub offset: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// `(k, n)`: only the k-th (from 0) of n contiguous, near-equal slices of the selection.
    pub shard: Option<(usize, usize)>,
}

/// Parse a shard `K/N` (0 ≤ K < N); empty: none.
pub fn parse_shard(text: &str) -> Result<Option<(usize, usize)>, NodeError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || NodeError::param("shard", format!("expected K/N with 0 ≤ K < N (e.g. 0/4), found '{text}'"));
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || k >= n {
        return Err(bad());
    }
    Ok(Some((k, n)))
}

/// The k-th of n contiguous slices of `m` items: `[k·m/n, (k+1)·m/n)`.
pub fn shard_range(m: usize, k: usize, n: usize) -> std::ops::Range<usize> {
    let at = |i: usize| ((i as u128 * m as u128) / n.max(1) as u128) as usize;
    at(k)..at(k + 1)
}

/// Decoded 8-bit images, planar RGB (CHW) per image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawImages {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
    /// Index of each image in the split (record number, or file order).
    pub indices: Vec<usize>,
    /// The folder read.
    pub origin: String,
}

impl RawImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Write image `i` interleaved (HWC: R, G, B per pixel) into `rgb` (3 × width × height
    /// bytes); `None` when there is no image `i`.
    pub fn interleaved_into(&self, i: usize, rgb: &mut [u8]) -> Option<()> {
        let plane = self.width * self.height;
        let src = self.pixels.get(i * 3 * plane..(i + 1) * 3 * plane)?;
        for (p, px) in rgb.chunks_exact_mut(3).take(plane).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = src[c * plane + p];
            }
        }
        Some(())
    }

    /// Image `i` interleaved (HWC), a new buffer; `None` when there is no image `i`.
    pub fn interleaved(&self, i: usize) -> Option<Vec<u8>> {
        let mut rgb = vec![0u8; 3 * self.width * self.height];
        self.interleaved_into(i, &mut rgb).map(|()| rgb)
    }

    /// Image `i` as an RGB (HWC) thumbnail.
    pub fn thumbnail(&self, i: usize) -> PreviewImage {
        let rgb = self.interleaved(i).unwrap_or_default();
        PreviewImage {
            index: self.indices.get(i).copied().unwrap_or(i),
            label: self.labels.get(i).copied().unwrap_or(0),
            width: self.width as u32,
            height: self.height as u32,
            rgb,
        }
    }
}

/// One split, before selection: pixels of every image, with labels.
struct Split {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
    labels: Vec<u32>,
    class_names: Vec<String>,
}

/// Read a split and apply the selection.
pub fn load(source: Source, dir: &Path, selection: &Selection, ctx: &EvalContext) -> Result<RawImages, NodeError> {
    let folder = source.folder(dir);
    if !folder.is_dir() {
        return Err(NodeError::file(format!("folder not found (expected {})", expected(source)), &folder));
    }
    let split = match source {
        Source::CifarBinary { .. } => read_cifar_binary(&folder, &source.file_names(), ctx)?,
        Source::CifarPython { .. } => read_cifar_python(&folder, &source.file_names(), ctx)?,
        Source::ImageFolder { .. } => {
            return Err(NodeError::failed("image folders are listed with list_image_folder, not loaded"))
        }
    };
    let chosen = select(&split.labels, split.class_names.len(), selection)?;
    let item = 3 * split.width * split.height;
    let mut pixels = Vec::with_capacity(chosen.len() * item);
    for &i in &chosen {
        pixels.extend_from_slice(&split.pixels[i * item..(i + 1) * item]);
    }
    Ok(RawImages {
        width: split.width,
        height: split.height,
        pixels,
        labels: chosen.iter().map(|&i| split.labels[i]).collect(),
        class_names: split.class_names,
        indices: chosen,
        origin: folder.display().to_string(),
    })
}

pub fn expected(source: Source) -> &'static str {
    match source {
        Source::CifarBinary { .. } => {
            "CIFAR-10 in the binary layout: test_batch.bin, data_batch_1.bin … data_batch_5.bin"
        }
        Source::CifarPython { .. } => {
            "CIFAR-10 in the python layout: test_batch, data_batch_1 … data_batch_5, batches.meta"
        }
        Source::ImageFolder { .. } => "one subfolder of PNG or JPEG images per class",
    }
}

fn class_names_from_meta(folder: &Path) -> Vec<String> {
    let from_file = quantgraph_nodes::fsio::read_regular_file(&folder.join("batches.meta.txt"), 1 << 20)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .filter(|names| names.len() == 10);
    from_file.unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|s| (*s).to_owned()).collect())
}

fn read_cifar_binary(folder: &Path, files: &[String], ctx: &EvalContext) -> Result<Split, NodeError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (fi, name) in files.iter().enumerate() {
        ctx.check_cancelled()?;
        let path = folder.join(name);
        let bytes = read_data_file(&path, MAX_DATA_FILE_BYTES, expected(Source::CifarBinary { train: false }))?;
        if bytes.is_empty() || bytes.len() % RECORD_BYTES != 0 {
            return Err(NodeError::file(
                format!(
                    "expected a whole number of {RECORD_BYTES}-byte CIFAR-10 records, found {} bytes (truncated, or not the CIFAR-10 binary layout)",
                    bytes.len()
                ),
                &path,
            ));
        }
        for (k, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let label = rec[0];
            if label > 9 {
                return Err(NodeError::file(
                    format!("record {k} has label {label}, but CIFAR-10 labels are 0–9 (is this CIFAR-100, or not the CIFAR-10 binary layout?)"),
                    &path,
                ));
            }
            labels.push(u32::from(label));
            pixels.extend_from_slice(&rec[1..]);
        }
        ctx.progress(0.1 + 0.5 * (fi + 1) as f32 / files.len() as f32, &format!("read {name}"));
    }
    Ok(Split { width: 32, height: 32, pixels, labels, class_names: class_names_from_meta(folder) })
}

fn key_of<'a>(dict: &'a BTreeMap<HashableValue, Pickle>, name: &str) -> Option<&'a Pickle> {
    dict.get(&HashableValue::Bytes(name.as_bytes().to_vec()))
        .or_else(|| dict.get(&HashableValue::String(name.to_owned())))
}

/// The pixel bytes of a pickled `numpy.ndarray` of uint8 (shape `[n, 3072]`), or of a
/// list of lists of ints.
fn array_bytes(value: &Pickle) -> Option<(Vec<u8>, usize)> {
    match value {
        // numpy's reconstruct, as the unpickler leaves it: (version, shape, dtype, fortran, raw)
        Pickle::Tuple(state) if state.len() == 5 => {
            let rows = match &state[1] {
                Pickle::Tuple(shape) | Pickle::List(shape) => match shape.first() {
                    Some(Pickle::I64(n)) => usize::try_from(*n).ok()?,
                    _ => return None,
                },
                _ => return None,
            };
            match &state[4] {
                Pickle::Bytes(b) => Some((b.clone(), rows)),
                Pickle::String(s) => Some((s.chars().map(|c| c as u32 as u8).collect(), rows)),
                _ => None,
            }
        }
        Pickle::List(rows) => {
            let mut out = Vec::with_capacity(rows.len() * PIXELS);
            for row in rows {
                let Pickle::List(vals) = row else { return None };
                for v in vals {
                    let Pickle::I64(x) = v else { return None };
                    out.push(u8::try_from(*x).ok()?);
                }
            }
            Some((out, rows.len()))
        }
        _ => None,
    }
}

/// The largest dataset file read (a CIFAR-10 batch is about 30 MiB).
pub const MAX_DATA_FILE_BYTES: u64 = 512 << 20;
/// The largest image file read from an image folder.
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;

/// Read a dataset file: a regular file (never a FIFO or a device) under the size limit.
pub fn read_data_file(path: &Path, limit: u64, expected_what: &str) -> Result<Vec<u8>, NodeError> {
    quantgraph_nodes::fsio::read_regular_file(path, limit)
        .map_err(|e| NodeError::file(format!("{e}; expected {expected_what}"), path))
}

fn read_pickle(path: &Path) -> Result<BTreeMap<HashableValue, Pickle>, NodeError> {
    let bytes = read_data_file(path, MAX_DATA_FILE_BYTES, expected(Source::CifarPython { train: false }))?;
    crate::pickle_scan::count_containers(&bytes)
        .map_err(|e| NodeError::file(format!("not a usable pickle: {e}; expected a CIFAR-10 python batch"), path))?;
    // Data only: globals are never resolved or called; numpy arrays are rebuilt from their state.
    let value = serde_pickle::value_from_slice(&bytes, DeOptions::new().replace_unresolved_globals())
        .map_err(|e| NodeError::file(format!("not a readable pickle ({e}); expected a CIFAR-10 python batch"), path))?;
    match value {
        Pickle::Dict(d) => Ok(d),
        _ => Err(NodeError::file("expected a pickled dict with 'data' and 'labels'", path)),
    }
}

fn read_cifar_python(folder: &Path, files: &[String], ctx: &EvalContext) -> Result<Split, NodeError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (fi, name) in files.iter().enumerate() {
        ctx.check_cancelled()?;
        let path = folder.join(name);
        let dict = read_pickle(&path)?;
        let Some(data) = key_of(&dict, "data") else {
            return Err(NodeError::file("expected a pickled dict with a 'data' entry, found none", &path));
        };
        let Some((bytes, rows)) = array_bytes(data) else {
            return Err(NodeError::file("expected 'data' to be a uint8 array of shape [N, 3072]", &path));
        };
        if bytes.len() != rows * PIXELS {
            return Err(NodeError::file(
                format!("expected 'data' of {} bytes ({rows} images × 3072), found {}", rows * PIXELS, bytes.len()),
                &path,
            ));
        }
        let lab = match key_of(&dict, "labels") {
            Some(Pickle::List(l)) => l
                .iter()
                .map(|v| match v {
                    Pickle::I64(x) if (0..10).contains(x) => Ok(*x as u32),
                    other => Err(NodeError::file(format!("expected labels 0–9, found {other:?}"), &path)),
                })
                .collect::<Result<Vec<u32>, _>>()?,
            _ => return Err(NodeError::file("expected a pickled dict with a 'labels' list, found none", &path)),
        };
        if lab.len() != rows {
            return Err(NodeError::file(format!("expected {rows} labels (one per image), found {}", lab.len()), &path));
        }
        pixels.extend_from_slice(&bytes);
        labels.extend(lab);
        ctx.progress(0.1 + 0.5 * (fi + 1) as f32 / files.len() as f32, &format!("read {name}"));
    }
    let mut class_names: Vec<String> = CIFAR10_CLASSES.iter().map(|s| (*s).to_owned()).collect();
    if let Ok(meta) = read_pickle(&folder.join("batches.meta")) {
        if let Some(Pickle::List(names)) = key_of(&meta, "label_names") {
            let names: Vec<String> = names
                .iter()
                .filter_map(|n| match n {
                    Pickle::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    Pickle::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            if names.len() == 10 {
                class_names = names;
            }
        }
    }
    Ok(Split { width: 32, height: 32, pixels, labels, class_names })
}

/// The identity of an image folder for cache keys: every class subfolder's and image
/// file's path, size and modification time (an image edited in place, added or removed
/// changes it), hashed.
pub fn folder_identity(folder: &Path) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut stack = vec![(folder.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        h.update(quantgraph_nodes::kind::file_identity(&dir).as_bytes());
        let Ok(entries) = list_dir(&dir) else { continue };
        for e in entries {
            if e.is_dir() && depth == 0 {
                stack.push((e, 1));
            } else if is_image(&e) {
                h.update(quantgraph_nodes::kind::file_identity(&e).as_bytes());
            }
        }
    }
    format!("{}:{:016x}", folder.display(), h.digest())
}

/// How image-folder labels are found.
#[derive(Debug, Clone, Default)]
pub struct LabelOptions {
    /// A class list (one class per line, in the model's output-index order; a line may be
    /// `id name…`, e.g. `n01440764 tench`): folders are matched by id.
    pub classes_file: Option<PathBuf>,
    /// A CSV of `filename,label` (filename relative to the folder; label an output index or a
    /// class id from the class list): the images are the rows, not the subfolders.
    pub csv_file: Option<PathBuf>,
    /// Skip class folders missing from the class list (they are named in the dataset's
    /// source line) instead of failing.
    pub skip_unmapped: bool,
}

/// The images of a folder, listed but not decoded.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub files: Vec<PathBuf>,
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
    /// Remarks for the user (skipped folders).
    pub notes: Vec<String>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, NodeError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| NodeError::file(format!("cannot list the folder ({e})"), dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}

/// A class list: per line, the id folders are matched by, and the name shown.
fn read_classes(path: &Path) -> Result<Vec<(String, String)>, NodeError> {
    let bytes = read_data_file(path, 16 << 20, "a class list, one class per line in output-index order")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| NodeError::file("expected a UTF-8 text file with one class per line", path))?;
    let classes: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((id, name)) => (id.to_owned(), format!("{id} {}", name.trim())),
            None => (l.to_owned(), l.to_owned()),
        })
        .collect();
    if classes.is_empty() {
        return Err(NodeError::file("expected one class per line, found no lines", path));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some((id, _)) = classes.iter().find(|(id, _)| !seen.insert(id.as_str())) {
        return Err(NodeError::file(
            format!("class '{id}' is listed twice; each line must be a different class"),
            path,
        ));
    }
    Ok(classes)
}

/// List an image folder: one subfolder per class (labels from the class list, else sorted
/// folder names), or the rows of a `filename,label` CSV.
pub fn list_image_folder(folder: &Path, opts: &LabelOptions, ctx: &EvalContext) -> Result<Listing, NodeError> {
    let classes = opts.classes_file.as_deref().map(read_classes).transpose()?;
    if let Some(csv) = &opts.csv_file {
        return list_csv(folder, csv, classes.as_deref());
    }
    let dirs: Vec<PathBuf> = list_dir(folder)?.into_iter().filter(|p| p.is_dir()).collect();
    if dirs.is_empty() {
        return Err(NodeError::file(
            format!("no class subfolders (expected {})", expected(Source::ImageFolder { train: false })),
            folder,
        ));
    }
    let dir_name = |d: &PathBuf| d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut listing = Listing::default();
    // Which label each folder gets.
    let mut labelled: Vec<(PathBuf, u32)> = Vec::new();
    match &classes {
        None => {
            listing.class_names = dirs.iter().map(dir_name).collect();
            labelled = dirs.iter().cloned().zip(0u32..).collect();
        }
        Some(classes) => {
            listing.class_names = classes.iter().map(|(_, name)| name.clone()).collect();
            let index: std::collections::HashMap<&str, u32> =
                classes.iter().zip(0u32..).map(|((id, _), k)| (id.as_str(), k)).collect();
            let mut unmapped = Vec::new();
            for d in &dirs {
                match index.get(dir_name(d).as_str()) {
                    Some(k) => labelled.push((d.clone(), *k)),
                    None => unmapped.push(dir_name(d)),
                }
            }
            if !unmapped.is_empty() {
                let shown = unmapped.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
                let more = if unmapped.len() > 8 { format!(" and {} more", unmapped.len() - 8) } else { String::new() };
                let what = format!(
                    "{} class folder(s) are not in the class list {}: {shown}{more}",
                    unmapped.len(),
                    opts.classes_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
                );
                if !opts.skip_unmapped {
                    return Err(NodeError::file(
                        format!("{what}; add them to the list, or turn on 'Skip folders not in the list'"),
                        folder,
                    ));
                }
                listing.notes.push(format!("skipped {what}"));
            }
        }
    }
    for (k, (dir, label)) in labelled.iter().enumerate() {
        ctx.check_cancelled()?;
        let files: Vec<PathBuf> = list_dir(dir)?.into_iter().filter(|p| is_image(p) && p.is_file()).collect();
        if files.is_empty() {
            return Err(NodeError::file("class folder has no PNG or JPEG images", dir));
        }
        listing.labels.extend(std::iter::repeat_n(*label, files.len()));
        listing.files.extend(files);
        ctx.progress(0.1 + 0.3 * (k + 1) as f32 / labelled.len() as f32, &format!("listed {}", dir_name(dir)));
    }
    Ok(listing)
}

fn list_csv(folder: &Path, csv_path: &Path, classes: Option<&[(String, String)]>) -> Result<Listing, NodeError> {
    let bytes = read_data_file(csv_path, 256 << 20, "a CSV of filename,label rows")?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes.as_slice());
    let index: std::collections::HashMap<&str, u32> =
        classes.unwrap_or_default().iter().zip(0u32..).map(|((id, _), k)| (id.as_str(), k)).collect();
    let mut listing = Listing::default();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| NodeError::file(format!("row {}: {e}", row + 1), csv_path))?;
        let (Some(file), Some(label)) = (record.get(0).map(str::trim), record.get(1).map(str::trim)) else {
            return Err(NodeError::file(format!("row {}: expected filename,label", row + 1), csv_path));
        };
        // A header row.
        if row == 0 && !is_image(Path::new(file)) {
            continue;
        }
        let label: u32 = match (label.parse::<u32>(), index.get(label)) {
            (Ok(n), Some(k)) if n != *k => {
                return Err(NodeError::file(
                    format!(
                    "row {}: label '{label}' is ambiguous: it is output index {n} and also the id of class {k} in the \
                         class list; use class ids that are not numbers, or indices without a class list",
                    row + 1
                ),
                    csv_path,
                ))
            }
            (_, Some(k)) => *k,
            (Ok(k), None) => k,
            (Err(_), None) => {
                return Err(NodeError::file(
                    format!(
                        "row {}: label '{label}' is neither an output index nor a class in the class list",
                        row + 1
                    ),
                    csv_path,
                ))
            }
        };
        if let Some(c) = classes {
            if label as usize >= c.len() {
                return Err(NodeError::file(
                    format!("row {}: label {label} is past the {} classes of the class list", row + 1, c.len()),
                    csv_path,
                ));
            }
        }
        let path = folder.join(file);
        if !path.starts_with(folder) || file.split(['/', '\\']).any(|part| part == "..") {
            return Err(NodeError::file(format!("row {}: '{file}' is outside the folder", row + 1), csv_path));
        }
        if !path.is_file() {
            return Err(NodeError::file(
                format!("row {}: expected an image file at {}, found none", row + 1, path.display()),
                csv_path,
            ));
        }
        listing.files.push(path);
        listing.labels.push(label);
    }
    if listing.files.is_empty() {
        return Err(NodeError::file("expected filename,label rows, found none", csv_path));
    }
    listing.class_names = match classes {
        Some(c) => c.iter().map(|(_, name)| name.clone()).collect(),
        None => {
            let k = listing.labels.iter().max().map_or(0, |m| *m as usize + 1);
            (0..k).map(|i| i.to_string()).collect()
        }
    };
    Ok(listing)
}

/// Deterministic shuffle (splitmix64 + Fisher–Yates), so a seed always picks the same images.
fn shuffle(items: &mut [usize], seed: u64) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The indices chosen by a selection.
pub fn select(labels: &[u32], classes: usize, s: &Selection) -> Result<Vec<usize>, NodeError> {
    let chosen = select_all(labels, classes, s)?;
    Ok(match s.shard {
        Some((k, n)) => chosen[shard_range(chosen.len(), k, n)].to_vec(),
        None => chosen,
    })
}

fn select_all(labels: &[u32], classes: usize, s: &Selection) -> Result<Vec<usize>, NodeError> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    if s.shuffle {
        shuffle(&mut order, s.seed);
    }
    if s.offset >= order.len() {
        return Err(NodeError::param(
            "offset",
            format!("offset {} is past the {} images of this split", s.offset, order.len()),
        ));
    }
    let order = &order[s.offset..];
    if s.per_class > 0 {
        let mut taken = vec![0usize; classes.max(1)];
        let mut out = Vec::new();
        for &i in order {
            let c = labels[i] as usize;
            if let Some(t) = taken.get_mut(c) {
                if *t < s.per_class {
                    *t += 1;
                    out.push(i);
                }
            }
        }
        if let Some((c, n)) = taken.iter().enumerate().find(|(_, n)| **n < s.per_class) {
            return Err(NodeError::param(
                "per_class",
                format!(
                    "class {c} has only {n} images from offset {}, but {} per class were asked for",
                    s.offset, s.per_class
                ),
            ));
        }
        return Ok(out);
    }
    let n = if s.count == 0 { order.len() } else { s.count.min(order.len()) };
    Ok(order[..n].to_vec())
}
