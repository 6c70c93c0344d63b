//! The client's IP address: the peer, or `X-Forwarded-For` / `X-Real-IP` when the peer is a trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;

/// The address requests are attributed to (rate limits, the metrics allow-list).
pub fn client_ip(req: &Request, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip())?;
    if !trusted_proxies.iter().any(|net| net.contains(&peer)) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The right-most address not belonging to a trusted proxy is the client.
            v.split(',')
                .rev()
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .find(|ip| !trusted_proxies.iter().any(|net| net.contains(ip)))
        });
    let real = || {
        req.headers()
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    };
    forwarded.or_else(real).or(Some(peer))
}
