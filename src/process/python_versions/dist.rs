//! The distributions installed in one directory (a `site-packages`, or any
//! `sys.path` entry pip installed into, e.g. `pip install --target DIR`): which
//! one owns a file under it.
//!
//! ```text
//! DIR/attrs-24.2.0.dist-info/METADATA   Name: attrs / Version: 24.2.0
//! DIR/attrs-24.2.0.dist-info/RECORD     attr/_make.py,sha256=...,1234
//! DIR/PyYAML-5.4.egg-info/PKG-INFO      (egg-info: legacy setuptools installs)
//! DIR/PyYAML-5.4.egg-info/installed-files.txt   ../yaml/__init__.py
//! DIR/PyYAML-5.4.egg-info/top_level.txt         yaml
//! ```
//!
//! Only what a lookup needs is kept: the top-level names (first path component)
//! each distribution installs, and, for names several distributions share
//! (namespace packages such as `google/`), those distributions' file lists.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

/// Most distribution directories read in one directory.
pub const MAX_DISTS: usize = 4096;
/// Largest metadata file read (RECORD, installed-files.txt, ...); larger ones are
/// cut there.
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// Bytes of METADATA / PKG-INFO read for the `Name:` and `Version:` headers.
const HEADER_BYTES: u64 = 64 << 10;

/// Who owns a top-level name.
#[derive(Debug)]
enum Owners {
    One(Arc<str>),
    /// `(tag, files under this name)` of each distribution sharing the name.
    Many(Vec<(Arc<str>, FxHashSet<Box<str>>)>),
}

/// One directory's distributions; tags are `name==version`.
#[derive(Debug, Default)]
pub struct DirIndex {
    top: FxHashMap<Box<str>, Owners>,
    bytes: usize,
}

/// A distribution as read: its tag and the paths it installs, relative to the
/// directory.
struct Dist {
    tag: Arc<str>,
    files: Vec<Box<str>>,
}

impl DirIndex {
    /// Reads `dir` (a path on this host, e.g. through `/proc/PID/root`). A directory
    /// without distributions, or one that cannot be read, gives an empty index.
    pub fn read(dir: &Path) -> DirIndex {
        let Ok(entries) = fs::read_dir(dir) else {
            return DirIndex::default();
        };
        let mut dists = Vec::new();
        for e in entries.flatten().take(64 * MAX_DISTS) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let dist = if name.ends_with(".dist-info") {
                read_dist_info(dir, &e.path(), name)
            } else if name.ends_with(".egg-info") && e.path().is_dir() {
                read_egg_info(dir, &e.path(), name)
            } else {
                continue;
            };
            dists.extend(dist);
            if dists.len() >= MAX_DISTS {
                break;
            }
        }
        DirIndex::from_dists(dists)
    }

    fn from_dists(dists: Vec<Dist>) -> DirIndex {
        let mut by_top: FxHashMap<Box<str>, Vec<usize>> = FxHashMap::default();
        for (i, d) in dists.iter().enumerate() {
            for f in &d.files {
                if let Some(top) = top_level(f) {
                    let owners = by_top.entry(top.into()).or_default();
                    if owners.last() != Some(&i) {
                        owners.push(i);
                    }
                }
            }
        }
        let mut index = DirIndex::default();
        for (top, owners) in by_top {
            index.bytes += top.len() + 48;
            let owners = if let [one] = owners[..] {
                Owners::One(dists[one].tag.clone())
            } else {
                Owners::Many(
                    owners
                        .iter()
                        .map(|&i| {
                            let files: FxHashSet<Box<str>> = dists[i]
                                .files
                                .iter()
                                .filter(|f| top_level(f) == Some(&*top))
                                .cloned()
                                .collect();
                            index.bytes += files.iter().map(|f| f.len() + 24).sum::<usize>();
                            (dists[i].tag.clone(), files)
                        })
                        .collect(),
                )
            };
            index.top.insert(top, owners);
        }
        index.bytes += dists.iter().map(|d| d.tag.len() + 16).sum::<usize>();
        index
    }

    /// The `name==version` of the distribution that installed `rel` (a path
    /// relative to the directory, `attr/_make.py`).
    pub fn owner(&self, rel: &str) -> Option<&Arc<str>> {
        match self.top.get(top_level(rel)?)? {
            Owners::One(tag) => Some(tag),
            Owners::Many(owners) => owners
                .iter()
                .find(|(_, files)| files.contains(rel))
                .map(|(tag, _)| tag),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.top.is_empty()
    }

    /// Approximate bytes held.
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<DirIndex>() + self.bytes
    }
}

/// The first component of a relative path, if it can name installed code:
/// `attr/_make.py` → `attr`; `six.py` → `six.py`; `../../bin/x` → None.
fn top_level(rel: &str) -> Option<&str> {
    let top = rel.split('/').next()?;
    let skip = top.is_empty()
        || top == ".."
        || top == "."
        || top == "__pycache__"
        || top.ends_with(".dist-info")
        || top.ends_with(".egg-info");
    (!skip).then_some(top)
}

fn read_dist_info(dir: &Path, info: &Path, name: &str) -> Option<Dist> {
    let tag = tag(&info.join("METADATA"), name.trim_end_matches(".dist-info"))?;
    let files = match read_capped(&info.join("RECORD")) {
        Some(text) => text
            .lines()
            .filter_map(record_path)
            .map(normalize)
            .collect(),
        None => top_level_txt(dir, info),
    };
    Some(Dist { tag, files })
}

fn read_egg_info(dir: &Path, info: &Path, name: &str) -> Option<Dist> {
    let tag = tag(&info.join("PKG-INFO"), name.trim_end_matches(".egg-info"))?;
    // installed-files.txt lists paths relative to the egg-info directory, which sits
    // in `dir`: `../yaml/__init__.py` is `yaml/__init__.py`.
    let files = if let Some(text) = read_capped(&info.join("installed-files.txt")) {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("../"))
            .map(normalize)
            .collect()
    } else {
        let mut files = top_level_txt(dir, info);
        if files.is_empty() {
            // SOURCES.txt lists the source tree (`src/yaml/__init__.py`): its
            // top-level names that exist here are what was installed.
            if let Some(text) = read_capped(&info.join("SOURCES.txt")) {
                let mut seen = FxHashSet::default();
                for l in text.lines() {
                    let l = l.trim();
                    let l = l.strip_prefix("src/").unwrap_or(l);
                    if let Some(top) =
                        top_level(l).filter(|t| l.ends_with(".py") && !t.contains(' '))
                    {
                        if seen.insert(top.to_string()) && dir.join(top).exists() {
                            files.push(top.into());
                        }
                    }
                }
            }
        }
        files
    };
    Some(Dist { tag, files })
}

/// `top_level.txt`: one importable name a line (`yaml`, `_yaml`); a name stands for
/// the package directory or the module file `name.py`.
fn top_level_txt(dir: &Path, info: &Path) -> Vec<Box<str>> {
    let Some(text) = read_capped(&info.join("top_level.txt")) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(|l| {
            if dir.join(l).is_dir() {
                l.into()
            } else {
                format!("{l}.py").into()
            }
        })
        .collect()
}

/// `Name:` and `Version:` from the metadata headers, else from the directory name
/// (`attrs-24.2.0`): `attrs==24.2.0`.
fn tag(metadata: &Path, stem: &str) -> Option<Arc<str>> {
    let (mut name, mut version) = (None, None);
    if let Ok(f) = fs::File::open(metadata) {
        let mut text = String::new();
        let _ = f.take(HEADER_BYTES).read_to_string(&mut text);
        for line in text.lines() {
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Name:") {
                name.get_or_insert_with(|| v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version.get_or_insert_with(|| v.trim().to_string());
            }
        }
    }
    let (stem_name, stem_version) = stem.split_once('-').unzip();
    let name = name.or(stem_name.map(str::to_string))?;
    let version = version.or(stem_version.map(|v| v.split('-').next().unwrap_or(v).to_string()))?;
    (!name.is_empty() && !version.is_empty()).then(|| format!("{name}=={version}").into())
}

/// The path field of a RECORD line (CSV: `path,hash,size`, the path quoted when it
/// holds a comma).
fn record_path(line: &str) -> Option<&str> {
    let line = line.trim_end_matches('\r');
    if let Some(quoted) = line.strip_prefix('"') {
        // A doubled quote inside is rare enough in file names to stop at.
        return quoted.split('"').next();
    }
    line.split(',').next().filter(|p| !p.is_empty())
}

fn normalize(p: &str) -> Box<str> {
    let p = p.trim();
    p.strip_prefix("./").unwrap_or(p).into()
}

fn read_capped(path: &Path) -> Option<String> {
    let f = fs::File::open(path).ok()?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn dist_info_record_names_the_owner() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "attrs-24.2.0.dist-info/METADATA",
            "Metadata-Version: 2.3\nName: attrs\nVersion: 24.2.0\n\nName: not-this\n",
        );
        write(
            dir,
            "attrs-24.2.0.dist-info/RECORD",
            "attr/__init__.py,sha256=x,10\nattr/_make.py,sha256=y,20\nattrs/__init__.py,,\n\"odd,name.py\",,\nattrs-24.2.0.dist-info/RECORD,,\n../../bin/tool,,\n",
        );
        write(dir, "six-1.16.0.dist-info/RECORD", "six.py,sha256=z,1\n");
        let index = DirIndex::read(dir);
        assert_eq!(
            index.owner("attr/_make.py").map(|t| &**t),
            Some("attrs==24.2.0")
        );
        assert_eq!(
            index.owner("attrs/__init__.py").map(|t| &**t),
            Some("attrs==24.2.0")
        );
        assert_eq!(
            index.owner("odd,name.py").map(|t| &**t),
            Some("attrs==24.2.0")
        );
        // No METADATA: the name and version come from the directory's name.
        assert_eq!(index.owner("six.py").map(|t| &**t), Some("six==1.16.0"));
        assert_eq!(index.owner("other/x.py"), None);
        assert_eq!(index.owner("../../bin/tool"), None);
        assert!(index.size_bytes() > 0);
    }

    #[test]
    fn namespace_packages_are_told_apart_by_their_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(dir, "google_a-1.0.dist-info/RECORD", "google/a/x.py,,\n");
        write(dir, "google_b-2.0.dist-info/RECORD", "google/b/y.py,,\n");
        let index = DirIndex::read(dir);
        assert_eq!(
            index.owner("google/a/x.py").map(|t| &**t),
            Some("google_a==1.0")
        );
        assert_eq!(
            index.owner("google/b/y.py").map(|t| &**t),
            Some("google_b==2.0")
        );
        assert_eq!(index.owner("google/c/z.py"), None);
    }

    #[test]
    fn egg_info_installed_files_top_level_and_sources() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(
            dir,
            "PyYAML-5.4.egg-info/PKG-INFO",
            "Name: PyYAML\nVersion: 5.4\n",
        );
        write(
            dir,
            "PyYAML-5.4.egg-info/installed-files.txt",
            "../yaml/__init__.py\nPKG-INFO\n",
        );
        write(
            dir,
            "legacy-0.3.egg-info/PKG-INFO",
            "Name: legacy\nVersion: 0.3\n",
        );
        write(
            dir,
            "legacy-0.3.egg-info/top_level.txt",
            "legacy\nlegacy_mod\n",
        );
        fs::create_dir_all(dir.join("legacy")).unwrap();
        write(
            dir,
            "src_only-1.1.egg-info/SOURCES.txt",
            "setup.py\nsrc/srconly/__init__.py\n",
        );
        fs::create_dir_all(dir.join("srconly")).unwrap();
        let index = DirIndex::read(dir);
        assert_eq!(
            index.owner("yaml/__init__.py").map(|t| &**t),
            Some("PyYAML==5.4")
        );
        assert_eq!(
            index.owner("legacy/core.py").map(|t| &**t),
            Some("legacy==0.3")
        );
        assert_eq!(
            index.owner("legacy_mod.py").map(|t| &**t),
            Some("legacy==0.3")
        );
        assert_eq!(
            index.owner("srconly/__init__.py").map(|t| &**t),
            Some("src_only==1.1")
        );
        // setup.py is in SOURCES.txt but not installed here.
        assert_eq!(index.owner("setup.py"), None);
    }

    #[test]
    fn a_directory_without_distributions_is_empty() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "pkg/mod.py", "");
        assert!(DirIndex::read(d.path()).is_empty());
        assert!(DirIndex::read(&d.path().join("missing")).is_empty());
    }
}
