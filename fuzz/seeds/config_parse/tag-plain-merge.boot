interfaces {
    /* */
    ethernet eth0 {
    }
    ethernet {
        eth1 "x"
        eth2 vif {
        }
    }
    ethernet "eth;3" {
    }
    dummy dum0 {
        address a
        address "a"
    }
}
