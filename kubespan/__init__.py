"""The kubespan node agent: a WireGuard full mesh built from discovery."""
