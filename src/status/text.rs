//! The text of `ntpgate status`, made from the status JSON: a summary, the
//! upstreams (like `chronyc sources`), the server's counters and rates
//! (like `chronyc serverstats`) and the pinholes.

use std::fmt::Write as _;

use serde_json::Value;

fn num(v: &Value, scale: f64, digits: usize) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.digits$}", x * scale))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `ntpgate status`: a summary, then tables like `chronyc sources` and
/// `chronyc serverstats`, made from the status JSON.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let sync = &status["sync"];
    let synced = sync["synchronised"].as_bool() == Some(true);
    let _ = writeln!(
        out,
        "ntpgate {}, up {} s: {}",
        text(&status["version"]),
        text(&status["uptime_s"]),
        if synced {
            format!(
                "synchronised, stratum {}, reference {}, offset {} ms",
                text(&sync["stratum"]),
                text(&sync["refid"]),
                num(&sync["offset_s"], 1e3, 3)
            )
        } else {
            "NOT synchronised: clients are told so (leap 3)".to_string()
        }
    );
    let _ = writeln!(
        out,
        "frequency {} ppm, root delay {} ms, root dispersion {} ms, leap {}, time from {}",
        num(&sync["frequency_ppm"], 1.0, 3),
        num(&sync["root_delay_s"], 1e3, 3),
        num(&sync["root_dispersion_s"], 1e3, 3),
        text(&sync["leap_text"]),
        text(&sync["source"])
    );
    let upstreams = status["upstreams"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\nUpstreams ({}):", upstreams.len());
    let _ = writeln!(
        out,
        "  {:<12} {:<32} {:>2} {:>4} {:>4} {:>11} {:>10} {:>10}",
        "state", "name (address)", "st", "poll", "reach", "offset ms", "delay ms", "jitter ms"
    );
    for u in &upstreams {
        let name = match u["address"].as_str() {
            Some(a) if a != u["name"].as_str().unwrap_or_default() => {
                format!("{} ({a})", text(&u["name"]))
            }
            _ => text(&u["name"]),
        };
        let _ = writeln!(
            out,
            "  {:<12} {:<32} {:>2} {:>4} {:>4o} {:>11} {:>10} {:>10}",
            text(&u["status"]),
            name,
            text(&u["stratum"]),
            text(&u["poll"]),
            u["reach"].as_u64().unwrap_or(0),
            num(&u["offset_s"], 1e3, 3),
            num(&u["delay_s"], 1e3, 3),
            num(&u["jitter_s"], 1e3, 3)
        );
    }
    let server = &status["server"];
    let c = &server["counters"];
    let d = &c["dropped"];
    let _ = writeln!(out, "\nServer:");
    for (label, value) in [
        (
            "requests/s, last minute",
            num(&server["requests_per_s"]["minute"], 1.0, 2),
        ),
        (
            "requests/s, last hour",
            num(&server["requests_per_s"]["hour"], 1.0, 2),
        ),
        (
            "clients seen, last hour",
            text(&server["clients_seen_hour"]),
        ),
        ("packets received", text(&c["received"])),
        ("packets answered", text(&c["answered"])),
        ("rate limited", text(&c["limited"])),
        ("  answered anyway (leak)", text(&c["leaked"])),
        ("  kiss-o'-death sent", text(&c["kod_sent"])),
        ("dropped: malformed", text(&d["malformed"])),
        ("dropped: mode", text(&d["mode"])),
        ("dropped: denied", text(&d["denied"])),
        ("dropped: rate limit", text(&d["ratelimit"])),
        ("send failures", text(&d["send_failed"])),
    ] {
        let _ = writeln!(out, "  {label:<26}: {value}");
    }
    let pinholes = status["pinholes"].as_array().cloned().unwrap_or_default();
    if !pinholes.is_empty() {
        let _ = writeln!(out, "\nPinholes ({}):", pinholes.len());
        for p in &pinholes {
            let addresses: Vec<String> = p["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let _ = writeln!(
                out,
                "  {} ({} on {}): {} [{}] health {}, {} packets, {} bytes, {} limited{}",
                text(&p["name"]),
                text(&p["target"]),
                text(&p["device"]),
                if p["open"].as_bool() == Some(true) {
                    "OPEN"
                } else {
                    "closed"
                },
                if addresses.is_empty() {
                    "-".to_string()
                } else {
                    addresses.join(", ")
                },
                text(&p["health"]),
                text(&p["packets"]),
                text(&p["bytes"]),
                text(&p["limited"]),
                if p["open"].as_bool() == Some(true) {
                    String::new()
                } else {
                    format!(": {}", text(&p["reason"]))
                }
            );
        }
    }
    out
}
