//! Running nft: every run bounded in time (a wedged nft is killed and the
//! caller tries again later, so that neither the upkeep of the holes nor a
//! stop waits on it), reading our objects for the reconciler, and applying
//! its commands.

use std::fmt;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::commands::Commands;
use super::listing::{
    self, LAN_SET_TYPE, LIMIT_SET_TYPE, MARK, ROUTER_SET_TYPE, Seen, judge_chain, judge_set,
    parse_chain, parse_chain_comment, parse_set,
};
use super::reconcile::Observed;
use crate::config::firewall::FirewallConfig;

/// The longest one nft run may take. Ours are small; a run this long is
/// stuck (on the netlink lock, say), and the next check tries again.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Error {
    pub message: String,
    /// nft did not finish in time and was killed.
    pub hung: bool,
}

impl Error {
    fn failed(message: String) -> Error {
        Error {
            message,
            hung: false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<listing::Error> for Error {
    fn from(e: listing::Error) -> Error {
        Error::failed(e.0)
    }
}

fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run nft with `args` (and `input` on its stdin); its output, or why not.
async fn nft(args: &[&str], input: Option<&str>) -> Result<std::process::Output, Error> {
    let run = async {
        let mut child = tokio::process::Command::new("nft")
            .args(args)
            .stdin(if input.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // A run that times out is dropped, and the process with it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::failed(format!("cannot run nft: {e}")))?;
        let mut written = Ok(());
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            written = stdin.write_all(text.as_bytes()).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Error::failed(format!("nft: {e}")))?;
        written.map_err(|e| Error::failed(format!("nft: {e}")))?;
        Ok(out)
    };
    tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            Err(Error {
                message: format!(
                    "nft {} did not finish within {} s: killed",
                    args.join(" "),
                    NFT_TIMEOUT.as_secs()
                ),
                hung: true,
            })
        })
}

/// `nft <args> FAMILY TABLE NAME`: what it prints, `None` when there is
/// no such object.
async fn list(fw: &FirewallConfig, args: &[&str], name: &str) -> Result<Option<String>, Error> {
    let mut all = args.to_vec();
    all.extend([fw.family.as_str(), &fw.table, name]);
    let out = nft(&all, None).await?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    if String::from_utf8_lossy(&out.stderr).contains("No such file or directory") {
        return Ok(None);
    }
    Err(Error::failed(format!(
        "nft {}: {}",
        all.join(" "),
        one_line(&out.stderr)
    )))
}

/// Reads our objects. It remembers the handle of the limit chain it last
/// found ours, so that the chain's comment (which nft 1.0.6 lists only as
/// text) is read again only when the chain is another one.
#[derive(Debug, Default)]
pub struct Reader {
    our_chain: Option<u64>,
}

impl Reader {
    pub async fn read(&mut self, fw: &FirewallConfig) -> Result<Observed, Error> {
        let set = |args: &'static [&'static str], name: &str, kind: &'static str| {
            let name = name.to_string();
            async move {
                Ok::<_, Error>(match list(fw, args, &name).await? {
                    None => Seen::Missing,
                    Some(json) => judge_set(parse_set(&json)?, kind),
                })
            }
        };
        let lan = set(&["-j", "list", "set"], &fw.lan_set, LAN_SET_TYPE)
            .await?
            .map(|s| listing::elements(&s));
        let router = set(&["-j", "list", "set"], &fw.router_set, ROUTER_SET_TYPE)
            .await?
            .map(|s| listing::elements(&s));
        // Terse: whose it is, not its elements (up to 65535 in a flood).
        let limit_set = set(&["-j", "-t", "list", "set"], &fw.limit_set, LIMIT_SET_TYPE)
            .await?
            .map(|_| ());
        let limits = match list(fw, &["-j", "list", "chain"], &fw.limit_chain).await? {
            None => Seen::Missing,
            Some(json) => {
                let chain = parse_chain(&json)?;
                let comment = if chain.hook.is_some() {
                    None
                } else if self.our_chain == Some(chain.handle) {
                    Some(MARK.to_string())
                } else {
                    list(fw, &["list", "chain"], &fw.limit_chain)
                        .await?
                        .and_then(|text| parse_chain_comment(&text, &fw.limit_chain))
                };
                let handle = chain.handle;
                let seen = judge_chain(chain, comment.as_deref());
                self.our_chain = seen.ours().map(|_| handle);
                seen.map(|c| listing::limit_rules(&c))
            }
        };
        let mut observed = Observed {
            lan,
            router,
            limit_set,
            limits,
            rules: Vec::new(),
            absent_chains: Vec::new(),
        };
        if fw.create {
            let mut chains = vec![&fw.forward_chain, &fw.input_chain];
            chains.dedup();
            for chain in chains {
                match list(fw, &["-j", "list", "chain"], chain).await? {
                    Some(json) => observed
                        .rules
                        .extend(listing::our_rules(&parse_chain(&json)?, chain)),
                    None => observed.absent_chains.push(chain.clone()),
                }
            }
        }
        Ok(observed)
    }
}

/// Run a batch: the text commands, then the JSON ones, each atomically;
/// nft's own message on failure.
pub async fn apply(commands: &Commands) -> Result<(), Error> {
    if !commands.text.is_empty() {
        run_batch(&["-f", "-"], &commands.text.join("\n")).await?;
    }
    if !commands.json.is_empty() {
        run_batch(&["-j", "-f", "-"], &commands.to_json()).await?;
    }
    Ok(())
}

async fn run_batch(args: &[&str], input: &str) -> Result<(), Error> {
    let out = nft(args, Some(input)).await?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::failed(format!(
        "nft refused the batch: {}",
        one_line(&out.stderr)
    )))
}
