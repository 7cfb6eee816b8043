//! Interface state from the kernel (`/sys/class/net/<name>/…`), read under the backend's root.

use std::path::Path;

use vrouter_proto::v1::InterfaceStatus;

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_owned())
}

fn counter(dir: &Path, name: &str) -> u64 {
    read(dir, &format!("statistics/{name}")).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Fills in what the kernel knows about a configured interface: operational state, MAC, MTU and
/// counters. Interfaces the kernel does not have (not created yet, or removed) are left as they
/// are, with state `absent` unless the configuration disabled them.
pub fn fill(sys_class_net: &Path, iface: &mut InterfaceStatus) {
    let dir = sys_class_net.join(&iface.name);
    let Some(oper) = read(&dir, "operstate") else {
        if iface.admin_up {
            iface.oper_state = "absent".to_owned();
        }
        return;
    };
    iface.oper_state = oper;
    if let Some(mac) = read(&dir, "address") {
        iface.mac = mac;
    }
    if let Some(mtu) = read(&dir, "mtu").and_then(|m| m.parse().ok()) {
        iface.mtu = mtu;
    }
    iface.rx_bytes = counter(&dir, "rx_bytes");
    iface.tx_bytes = counter(&dir, "tx_bytes");
    iface.rx_errors = counter(&dir, "rx_errors");
    iface.tx_errors = counter(&dir, "tx_errors");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let eth0 = dir.path().join("eth0");
        std::fs::create_dir_all(eth0.join("statistics")).unwrap();
        for (f, v) in [("operstate", "up\n"), ("address", "00:53:00:00:00:01\n"), ("mtu", "9000\n")] {
            std::fs::write(eth0.join(f), v).unwrap();
        }
        for (f, v) in [("rx_bytes", "1234"), ("tx_bytes", "99"), ("rx_errors", "2"), ("tx_errors", "x")] {
            std::fs::write(eth0.join("statistics").join(f), v).unwrap();
        }
        let mut i = InterfaceStatus { name: "eth0".into(), admin_up: true, mtu: 1500, ..Default::default() };
        fill(dir.path(), &mut i);
        assert_eq!((i.oper_state.as_str(), i.mac.as_str(), i.mtu), ("up", "00:53:00:00:00:01", 9000));
        assert_eq!((i.rx_bytes, i.tx_bytes, i.rx_errors, i.tx_errors), (1234, 99, 2, 0));
        let mut missing = InterfaceStatus { name: "eth9".into(), admin_up: true, ..Default::default() };
        fill(dir.path(), &mut missing);
        assert_eq!(missing.oper_state, "absent");
        let mut disabled = InterfaceStatus { name: "eth8".into(), oper_state: "down".into(), ..Default::default() };
        fill(dir.path(), &mut disabled);
        assert_eq!(disabled.oper_state, "down");
    }
}
