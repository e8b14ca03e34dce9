//! Option values: UCI's booleans, bounded numbers, seconds, CIDRs.

use std::fmt;

use super::Resolved;
use super::diagnostics::Report;
use crate::net::Cidr;

/// Store a parsed value or report why it is bad. True when stored.
pub(super) fn set<T>(
    report: &mut Report<'_>,
    line: usize,
    name: &str,
    parsed: Result<T, String>,
    into: &mut T,
) -> bool {
    match parsed {
        Ok(v) => {
            *into = v;
            true
        }
        Err(why) => {
            report.error(line, format!("{name}: {why}"));
            false
        }
    }
}

pub(super) fn cidrs(opt: &Resolved, report: &mut Report<'_>) -> Vec<Cidr> {
    opt.values
        .iter()
        .filter_map(|(v, line)| match Cidr::parse(v) {
            Ok((cidr, had_host_bits)) => {
                if had_host_bits {
                    report.warning(
                        *line,
                        format!("{}: '{v}' has host bits set; it means {cidr}", opt.name),
                    );
                }
                Some(cidr)
            }
            Err(why) => {
                report.error(*line, format!("{}: {why}", opt.name));
                None
            }
        })
        .collect()
}

/// UCI's boolean spellings, as libuci's `uci_validate_bool` and LuCI accept.
pub(super) fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "yes" | "on" | "true" | "enabled" => Ok(true),
        "0" | "no" | "off" | "false" | "disabled" => Ok(false),
        _ => Err(format!("'{v}' is not a boolean (use 1 or 0)")),
    }
}

pub(super) fn parse_range<T>(v: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!("'{v}' is not a whole number from {min} to {max}")),
    }
}

pub(super) fn parse_seconds(v: &str, min: f64, max: f64) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (min..=max).contains(&s) => Ok(s),
        _ => Err(format!(
            "'{v}' is not a number of seconds from {min} to {max}"
        )),
    }
}
