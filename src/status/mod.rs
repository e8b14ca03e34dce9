//! The one status model: what the daemon knows about itself, as the JSON
//! that its ubus object answers, `ntpgate status --json` prints, and LuCI
//! shows; and the text `ntpgate status` makes of that JSON.

mod counters;
mod model;
mod text;

pub use counters::{Clients, RateHistory, ServerCounters};
pub use model::{PinholeStatus, Snapshot, addresses_json, clients_json};
pub use text::render;
