"""The routing core: configuration, breakers, routing, switches, outcomes. No mitmproxy, no HTTP
library: everything here is driven by plain values and an injected clock."""
