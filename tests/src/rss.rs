//! Resident memory of this process, from `/proc/self/status` (Linux).

/// The resident set size in KiB (`VmRSS`), or `None` where `/proc` is not available.
pub fn vm_rss_kib() -> Option<u64> {
    status_field("VmRSS:")
}

/// The peak resident set size in KiB (`VmHWM`), or `None` where `/proc` is not available.
pub fn vm_hwm_kib() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_field(&status, name)
}

fn parse_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tsoak\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_field(status, "VmRSS:"), Some(10_240));
        assert_eq!(parse_field(status, "VmHWM:"), Some(20_480));
        assert_eq!(parse_field(status, "VmSwap:"), None);
        if cfg!(target_os = "linux") {
            assert!(vm_rss_kib().is_some_and(|kib| kib > 0));
        }
    }
}
