//! Upstreams a pool server should not use: the pool itself, and services
//! that smear leap seconds. `check` warns about them, and the status page's
//! pool checklist shows them.

/// Pool names: a pool server must not take its time from the pool.
pub fn is_pool_name(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == "pool.ntp.org" || h.ends_with(".pool.ntp.org")
}

/// Services known to smear leap seconds: their time is off by up to 0.5 s
/// around a leap second, which the pool's monitor counts against us.
pub fn smears_leap_seconds(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    let smearing = [
        "time.google.com",
        "time.aws.com",
        "time.facebook.com",
        "time.windows.com",
    ];
    smearing.contains(&h.as_str())
        || (h.starts_with("time") && (h.ends_with(".google.com") || h.ends_with(".facebook.com")))
}
