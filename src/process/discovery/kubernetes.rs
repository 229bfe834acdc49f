//! The Kubernetes pod a process runs in, where the host is a Kubernetes node.
//!
//! - **Pod uid**, from the cgroup path (always there for a pod's containers). The
//!   kubelet names a pod's cgroup `pod<uid>` (cgroupfs driver) or
//!   `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd driver), under a
//!   `kubepods` cgroup:
//!   ```text
//!   11:memory:/kubepods/burstable/pod7c1e2d3a-1b2c-4d5e-8f9a-0b1c2d3e4f5a/3f9a...   v1, docker/containerd
//!   0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c1e2d3a_1b2c_....slice/cri-containerd-3f9a....scope
//!   0::/kubepods.slice/kubepods-pod7c1e..._....slice/crio-3f9a....scope        guaranteed QoS, cri-o
//!   ```
//!   The uid is a UUID (36 characters) or, for static pods, 32 hex digits.
//! - **Pod name**, best effort: `HOSTNAME` in the first [`ENVIRON_MAX_BYTES`] of
//!   `/proc/PID/environ` (container runtimes set it to the pod's host name, which
//!   is its name unless the pod sets `hostname`). Left out when it is the node's
//!   own host name (a `hostNetwork` pod) or not a valid pod name.
//! - **Namespace**, best effort: the service account's `namespace` file inside the
//!   container (`/var/run/secrets/kubernetes.io/serviceaccount/namespace`), opened
//!   with `openat2(RESOLVE_IN_ROOT)` below `/proc/PID/root` so that a symlink in the
//!   container's tree (`/var/run -> /run`) resolves inside the container, never in
//!   the agent's own tree. Absent when the pod mounts no service account token.
//!
//! Nothing here errors: a missing or unreadable file is normal and gives `None`.
//! Only processes with a pod uid are read further, at most a few KiB each.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};

use procfs::process::Process;

/// The most of `/proc/PID/environ` read for `HOSTNAME`.
pub const ENVIRON_MAX_BYTES: u64 = 4096;
/// The most of the namespace file read (a namespace is at most 63 bytes).
const NAMESPACE_MAX_BYTES: u64 = 256;
/// Where Kubernetes mounts a pod's service account, inside its containers.
const NAMESPACE_FILE: &str = "var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// What is known of the pod a process runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's uid, with dashes (`7c1e2d3a-1b2c-4d5e-8f9a-0b1c2d3e4f5a`).
    pub uid: String,
    /// The pod's name, when `HOSTNAME` gave it.
    pub name: Option<String>,
    /// The pod's namespace, when its service account file is there.
    pub namespace: Option<String>,
}

/// The pod uid in the text of a `/proc/PID/cgroup` file: the innermost `pod<uid>`
/// component below a `kubepods` component.
pub fn pod_uid(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let components: Vec<&str> = path.split('/').collect();
        let first_kubepods = components.iter().position(|c| c.starts_with("kubepods"))?;
        components[first_kubepods..]
            .iter()
            .rev()
            .find_map(|c| uid_in_component(c))
    })
}

fn uid_in_component(component: &str) -> Option<String> {
    let c = component.strip_suffix(".slice").unwrap_or(component);
    // `pod<uid>` or `kubepods-<qos>-pod<uid>` / `kubepods-pod<uid>`.
    let uid = match c.rfind("-pod") {
        Some(i) if c.starts_with("kubepods") => &c[i + 4..],
        _ => c.strip_prefix("pod")?,
    };
    let uid = uid.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// A UUID (8-4-4-4-12 hex digits) or 32 hex digits (static pods).
fn is_uid(s: &str) -> bool {
    let hex = |b: u8| b.is_ascii_hexdigit();
    match s.len() {
        32 => s.bytes().all(hex),
        36 => s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => hex(b),
        }),
        _ => false,
    }
}

/// `HOSTNAME` in (the start of) an environ block, if it is a valid pod name and not
/// `node_hostname`.
pub fn pod_name_from_environ(environ: &[u8], node_hostname: Option<&str>) -> Option<String> {
    let value = environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"HOSTNAME="))?;
    let name = std::str::from_utf8(value).ok()?;
    if !is_dns_subdomain(name) || Some(name) == node_hostname {
        return None;
    }
    Some(name.to_string())
}

/// A namespace file's text, if it holds a valid namespace name.
pub fn namespace_from_file(text: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(text).ok()?.trim();
    (name.len() <= 63 && is_dns_subdomain(name)).then(|| name.to_string())
}

/// Lowercase letters, digits, `-` and `.`, starting and ending alphanumeric, at most
/// 253 bytes: what Kubernetes accepts as a pod name (namespaces: at most 63, no `.`
/// in practice, not checked further).
fn is_dns_subdomain(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}

/// The pod of a process whose cgroup file is `cgroup`, reading its environ and
/// namespace file only if it has a pod uid. Never fails.
pub(super) fn read_pod(
    proc: &Process,
    cgroup: &str,
    node_hostname: Option<&str>,
) -> Option<PodInfo> {
    let uid = pod_uid(cgroup)?;
    let name = proc.open_relative("environ").ok().and_then(|f| {
        let mut raw = Vec::new();
        f.take(ENVIRON_MAX_BYTES).read_to_end(&mut raw).ok()?;
        if raw.len() as u64 == ENVIRON_MAX_BYTES {
            // Cut by the bound: the last variable may be cut too; leave it out.
            let end = raw.iter().rposition(|b| *b == 0).map_or(0, |i| i + 1);
            raw.truncate(end);
        }
        pod_name_from_environ(&raw, node_hostname)
    });
    let namespace = proc.open_relative("root").ok().and_then(|root| {
        let file = open_in_root(&root, NAMESPACE_FILE)?;
        let mut raw = Vec::new();
        file.take(NAMESPACE_MAX_BYTES).read_to_end(&mut raw).ok()?;
        namespace_from_file(&raw)
    });
    Some(PodInfo {
        uid,
        name,
        namespace,
    })
}

/// Opens `path` below the directory `root` as if `root` were `/`: absolute symlinks
/// and `..` stay inside it (`openat2` with `RESOLVE_IN_ROOT`, Linux 5.6). `None`
/// when anything fails, including a kernel without `openat2`.
fn open_in_root(root: &File, path: &str) -> Option<File> {
    let path = CString::new(path).ok()?;
    // SAFETY: `open_how` is plain data; zeroed is a valid value of it.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the pointers are valid for the call, the size is that of `how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd as i32) };
    file.metadata().ok()?.is_file().then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "7c1e2d3a-1b2c-4d5e-8f9a-0b1c2d3e4f5a";
    const UID_: &str = "7c1e2d3a_1b2c_4d5e_8f9a_0b1c2d3e4f5a";
    const ID: &str = "3f9a1c0e5b7d4e2f8a6b1c3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e0f";

    #[test]
    fn pod_uid_from_every_driver_and_runtime() {
        let cases = [
            // cgroup v1, cgroupfs driver, docker (dockershim) and containerd
            format!("12:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n11:memory:/kubepods/burstable/pod{UID}/{ID}\n"),
            // guaranteed QoS has no QoS level
            format!("4:pids:/kubepods/pod{UID}/{ID}\n"),
            // cgroup v1, systemd driver, docker
            format!("1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope\n"),
            // cgroup v2, systemd driver, containerd
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"),
            // cgroup v2, cri-o, guaranteed
            format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope\n"),
            // kind / k3s: a node in a docker container
            format!("0::/docker/{ID}/kubepods/besteffort/pod{UID}/{ID}\n"),
        ];
        for text in &cases {
            assert_eq!(pod_uid(text).as_deref(), Some(UID), "{text}");
        }
        // Static pods: 32 hex digits.
        let static_uid = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            pod_uid(&format!("0::/kubepods/burstable/pod{static_uid}/{ID}\n")).as_deref(),
            Some(static_uid)
        );
    }

    #[test]
    fn no_pod_outside_kubepods() {
        assert_eq!(
            pod_uid(&format!("0::/system.slice/docker-{ID}.scope\n")),
            None
        );
        assert_eq!(pod_uid(&format!("12:cpu:/docker/{ID}\n")), None);
        assert_eq!(pod_uid(&format!("0::/user.slice/pod{UID}/x\n")), None);
        assert_eq!(
            pod_uid("0::/kubepods.slice/kubepods-burstable.slice\n"),
            None
        );
        assert_eq!(pod_uid("0::/kubepods/burstable/podnot-a-uid/x\n"), None);
        assert_eq!(pod_uid("0::/\n"), None);
        assert_eq!(pod_uid(""), None);
    }

    #[test]
    fn pod_name_from_hostname() {
        let env = b"PATH=/usr/bin\0HOSTNAME=web-7d9f8b6c5-x2x9q\0HOME=/root\0";
        assert_eq!(
            pod_name_from_environ(env, Some("node-1")).as_deref(),
            Some("web-7d9f8b6c5-x2x9q")
        );
        // hostNetwork pods see the node's name.
        assert_eq!(
            pod_name_from_environ(b"HOSTNAME=node-1\0", Some("node-1")),
            None
        );
        assert_eq!(pod_name_from_environ(b"PATH=/bin\0", None), None);
        assert_eq!(pod_name_from_environ(b"HOSTNAME=Not_Valid\0", None), None);
        assert_eq!(pod_name_from_environ(b"HOSTNAME=\0", None), None);
        // The last variable, unterminated (`read_pod` leaves out a variable cut by
        // the bound before it gets here).
        assert_eq!(
            pod_name_from_environ(b"A=1\0HOSTNAME=web-1", None).as_deref(),
            Some("web-1")
        );
        assert_eq!(pod_name_from_environ(b"XHOSTNAME=web\0", None), None);
    }

    #[test]
    fn namespace_file() {
        assert_eq!(
            namespace_from_file(b"payments\n").as_deref(),
            Some("payments")
        );
        assert_eq!(
            namespace_from_file(b"kube-system").as_deref(),
            Some("kube-system")
        );
        assert_eq!(namespace_from_file(b""), None);
        assert_eq!(namespace_from_file(b"../etc"), None);
        assert_eq!(namespace_from_file(&[b'a'; 64]), None);
    }

    #[test]
    fn open_in_root_stays_inside() {
        let dir = std::env::temp_dir().join(format!("profpipe-k8s-{}", std::process::id()));
        let ns = dir.join("var/run/secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&ns).unwrap();
        std::fs::write(ns.join("namespace"), "shop\n").unwrap();
        // An absolute symlink resolves inside `dir`.
        std::os::unix::fs::symlink("/var/run/secrets", dir.join("abs")).unwrap();
        let root = File::open(&dir).unwrap();
        let read = |p: &str| {
            open_in_root(&root, p).map(|mut f| {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                s
            })
        };
        match read(NAMESPACE_FILE) {
            // Kernels before 5.6 have no openat2: best effort means none.
            None => eprintln!("openat2 unavailable; skipped"),
            Some(text) => {
                assert_eq!(text, "shop\n");
                assert_eq!(
                    read("abs/kubernetes.io/serviceaccount/namespace").as_deref(),
                    Some("shop\n")
                );
                assert_eq!(read("var/run/secrets"), None, "a directory is not a file");
                assert_eq!(read("missing"), None);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
