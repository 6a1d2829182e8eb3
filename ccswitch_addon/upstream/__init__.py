"""The provider side: the engine's own connections to providers.

mitmproxy keeps the client side (CONNECT, TLS, HTTP/1 and HTTP/2 to the tool, inspection).
A routed request that asked for a stream is pointed at the relay (relay.py), a loopback
server on mitmproxy's own event loop with a small HTTP/1.1 server of its own (answer.py); one
that asked for a whole answer is served in the request hook itself, into an answer held whole
(held.py). Either way the attempts run in exchange.py, with one pooled client: each attempt
with a connect timeout, a first-byte timeout, a commit point for streams and an idle timeout
after it. The client is the pool (client.py), one connection (connection.py), HTTP/1.1 on
the wire (http11.py) and the tunnel through an upstream proxy (tunnel.py). Only connection.py
imports the HTTP parser (httptools); none of it imports mitmproxy.
"""
