interfaces {
    ethernet eth0 {
        address 192.0.2.10/24
        description uplink
    }
    ethernet eth1 {
        address 10.1.0.1/24
        description lan
    }
    loopback lo {
    }
}
protocols {
    static {
        route 0.0.0.0/0 {
            next-hop 192.0.2.1 {
            }
        }
    }
}
service {
    ssh {
        port 22
    }
}
system {
    host-name edge-1
    name-server 192.0.2.53
    time-zone UTC
}

// Warning: Do not remove the following line.
// vyos-config-version: "interfaces@32:system@27"
// Release version: 1.4.0
