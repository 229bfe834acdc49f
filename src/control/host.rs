//! What a heartbeat says about this host, found without starting any process (an
//! idle agent runs no child): its address toward the server, and the perf events
//! its kernel offers.

use std::net::IpAddr;
use std::path::Path;

/// The local address the kernel would use to reach `server` (a UDP "connect" picks
/// a route and sends nothing; gProfiler does the same toward 8.8.8.8).
pub async fn address_toward(server: &reqwest::Url) -> Option<IpAddr> {
    let host = server.host_str()?;
    let port = server.port_or_known_default()?;
    let target = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
    socket.connect(target).await.ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// perf events this host supports: the software clocks always; the hardware
/// counters when the kernel lists a CPU PMU (`/sys/bus/event_source/devices/cpu`;
/// absent on most VMs).
pub fn perf_events() -> Vec<String> {
    perf_events_in(Path::new("/sys/bus/event_source/devices"))
}

fn perf_events_in(devices: &Path) -> Vec<String> {
    let mut events = vec!["cpu-clock".to_string(), "task-clock".to_string()];
    let pmu = devices.join("cpu/events");
    for (file, name) in [
        ("cpu-cycles", "cycles"),
        ("instructions", "instructions"),
        ("cache-misses", "cache-misses"),
        ("branch-misses", "branch-misses"),
    ] {
        if pmu.join(file).exists() {
            events.push(name.to_string());
        }
    }
    events
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_clocks_always_hardware_counters_when_listed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(perf_events_in(dir.path()), ["cpu-clock", "task-clock"]);
        std::fs::create_dir_all(dir.path().join("cpu/events")).unwrap();
        std::fs::write(dir.path().join("cpu/events/cpu-cycles"), "event=0x3c").unwrap();
        assert_eq!(
            perf_events_in(dir.path()),
            ["cpu-clock", "task-clock", "cycles"]
        );
    }
}
