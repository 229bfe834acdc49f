//! The container a process runs in, from `/proc/PID/cgroup`.
//!
//! Container runtimes name a container's cgroup after its 64-hex-digit id:
//!
//! ```text
//! 12:cpu,cpuacct:/docker/3f9a...c2                                   docker, cgroup v1
//! 0::/system.slice/docker-3f9a...c2.scope                             docker, cgroup v2 + systemd
//! 11:memory:/kubepods/burstable/pod7c1e.../3f9a...c2                  kubernetes, cgroupfs driver
//! 0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c1e....slice/cri-containerd-3f9a...c2.scope
//! 0::/machine.slice/libpod-3f9a...c2.scope                            podman
//! 0::/kubepods.slice/.../crio-3f9a...c2.scope                         cri-o
//! ```
//!
//! The id is the innermost path component that is (or ends in `-`/`:` followed by)
//! exactly 64 lowercase hex digits, `.scope` stripped. `crio-conmon-<id>` is cri-o's
//! monitor process, not the container. On the host (`0::/`, `0::/user.slice/...`,
//! 32-digit ids of other tools) there is none.

/// The container id in the text of a `/proc/PID/cgroup` file.
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.rsplit('/')
            .find_map(id_in_component)
            .map(str::to_string)
    })
}

fn id_in_component(component: &str) -> Option<&str> {
    let c = component.strip_suffix(".scope").unwrap_or(component);
    if c.starts_with("crio-conmon-") {
        return None;
    }
    let id = match c.rfind(['-', ':']) {
        Some(i) => &c[i + 1..],
        None => c,
    };
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (id.len() == 64 && id.bytes().all(hex)).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f9a1c0e5b7d4e2f8a6b1c3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e0f";

    #[test]
    fn runtimes() {
        let cases = [
            format!("12:cpu,cpuacct:/docker/{ID}\n11:memory:/docker/{ID}\n"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
            format!("11:memory:/kubepods/burstable/pod7c1e2d3a-1b2c-4d5e-8f9a-0b1c2d3e4f5a/{ID}\n"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c1e2d3a_1b2c_4d5e_8f9a_0b1c2d3e4f5a.slice/cri-containerd-{ID}.scope\n"),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/x.slice/crio-{ID}.scope\n"),
            format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            format!("1:name=systemd:/ecs/5a8b3c/{ID}\n"),
        ];
        for text in &cases {
            assert_eq!(container_id(text).as_deref(), Some(ID), "{text}");
        }
    }

    #[test]
    fn nested_takes_the_innermost() {
        let outer = "a".repeat(64);
        assert_eq!(
            container_id(&format!("0::/docker/{outer}/docker/{ID}\n")).as_deref(),
            Some(ID)
        );
    }

    #[test]
    fn host_and_lookalikes_have_none() {
        assert_eq!(container_id("0::/\n"), None);
        assert_eq!(
            container_id("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
        assert_eq!(
            container_id("4:memory:/process_api/92e179c6eb4f889083135005e172fb52\n"),
            None
        );
        assert_eq!(
            container_id(&format!("0::/system.slice/crio-conmon-{ID}.scope\n")),
            None
        );
        assert_eq!(
            container_id(&format!("0::/x/{}\n", ID.to_uppercase())),
            None
        );
        assert_eq!(container_id(""), None);
    }
}
