//! `ultracloud db`: the flaredb client on the command line.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use ultracloud_flaredb::Client;

/// Talk to flaredb: read and write keys, run a transaction, show regions and nodes.
/// Keys and values are taken as UTF-8 text and printed as text when they are valid UTF-8.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Nodes to contact (host:port,…).
    #[arg(
        long,
        global = true,
        env = "ULTRACLOUD_FLAREDB_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2479"
    )]
    endpoints: Vec<String>,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// TLS directory with a cluster certificate (role admin or control-plane) for a cluster
    /// that speaks TLS.
    #[arg(long, global = true, env = "ULTRACLOUD_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Print a key's value (exit code 1 when absent).
    Get {
        /// The key.
        key: String,
    },
    /// Set a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
    },
    /// Add to a decimal counter and print the new value.
    Incr {
        /// The key.
        key: String,
        /// What to add.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
    },
    /// Set a key only if it has the expected value (exit code 1 and the current value when not).
    Cas {
        /// The key.
        key: String,
        /// The expected value; omit with --absent.
        #[arg(long, conflicts_with = "absent")]
        expect: Option<String>,
        /// Expect the key to be absent.
        #[arg(long)]
        absent: bool,
        /// The new value.
        value: String,
    },
    /// List keys in [START, END) with their values, in one snapshot.
    Scan {
        /// First key [default: the beginning].
        #[arg(default_value = "")]
        start: String,
        /// End (exclusive) [default: the end of the key space].
        end: Option<String>,
        /// Keys starting with this prefix (instead of START/END).
        #[arg(long, conflicts_with_all = ["start", "end"])]
        prefix: Option<String>,
        /// Most keys to print (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Descending order.
        #[arg(long)]
        reverse: bool,
    },
    /// Apply several writes atomically: `put KEY VALUE`, `del KEY` (repeatable).
    Txn {
        /// Puts as KEY=VALUE.
        #[arg(long = "put", value_name = "KEY=VALUE")]
        puts: Vec<String>,
        /// Keys to delete.
        #[arg(long = "del", value_name = "KEY")]
        dels: Vec<String>,
    },
    /// Show the region map: ranges, replicas, leaders, sizes.
    Regions,
    /// Show the nodes and whether they are up.
    Status,
}

fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("0x{}", hex::encode(b)),
    }
}

fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Runs the subcommand.
pub async fn run(args: DbArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.tls_dir {
        ultracloud_tls::client::install_dir(dir)?;
    }
    let client = Client::new(args.endpoints.clone())?;
    match args.command {
        DbCommand::Get { key } => match client.get(key.as_bytes()).await? {
            Some(v) => println!("{}", text(&v)),
            None => {
                eprintln!("{key}: not found");
                return Ok(ExitCode::from(1));
            }
        },
        DbCommand::Put { key, value } => {
            client.put(key.as_bytes(), value.as_bytes()).await?;
            println!("OK");
        }
        DbCommand::Del { key } => {
            client.delete(key.as_bytes()).await?;
            println!("OK");
        }
        DbCommand::Incr { key, delta } => println!("{}", client.increment(key.as_bytes(), delta).await?),
        DbCommand::Cas { key, expect, absent: _, value } => {
            match client
                .compare_and_swap(key.as_bytes(), expect.as_deref().map(str::as_bytes), Some(value.as_bytes()))
                .await?
            {
                None => println!("OK"),
                Some(current) => {
                    println!("FAILED: current value is {}", current.as_deref().map_or("(absent)".to_owned(), text));
                    return Ok(ExitCode::from(1));
                }
            }
        }
        DbCommand::Scan { start, end, prefix, limit, reverse } => {
            let (s, e) = match prefix {
                Some(p) => (p.clone().into_bytes(), prefix_end(p.as_bytes())),
                None => (start.into_bytes(), end.map(String::into_bytes)),
            };
            let rows = client.scan(&s, e.as_deref(), limit, reverse).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for p in rows {
                    println!("{}\t{}", text(&p.key), text(&p.value));
                }
            }
        }
        DbCommand::Txn { puts, dels } => {
            if puts.is_empty() && dels.is_empty() {
                anyhow::bail!("nothing to do: give --put KEY=VALUE or --del KEY");
            }
            let mut writes = Vec::new();
            for p in &puts {
                let (k, v) = p.split_once('=').ok_or_else(|| anyhow::anyhow!("--put {p:?}: expected KEY=VALUE"))?;
                writes.push((k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())));
            }
            for d in &dels {
                writes.push((d.as_bytes().to_vec(), None));
            }
            let ts = client
                .transact(async |t| {
                    for (k, v) in &writes {
                        match v {
                            Some(v) => t.put(k, v),
                            None => t.delete(k),
                        }
                    }
                    Ok(())
                })
                .await;
            ts?;
            println!("OK ({} writes committed atomically)", writes.len());
        }
        DbCommand::Regions => {
            let r = client.regions().await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let name = |id: u64| r.nodes.iter().find(|n| n.id == id).map_or(id.to_string(), |n| n.name.clone());
                println!(
                    "{:<8} {:<20} {:<20} {:<8} {:<24} {:<10} KEYS",
                    "REGION", "START", "END", "VERSION", "REPLICAS", "LEADER"
                );
                for i in &r.regions {
                    let d = &i.desc;
                    println!(
                        "{:<8} {:<20} {:<20} {:<8} {:<24} {:<10} {}",
                        d.id,
                        if d.start.is_empty() { "-".into() } else { text(&d.start) },
                        d.end.as_deref().map_or("-".into(), text),
                        d.version,
                        d.voters.iter().map(|v| name(*v)).collect::<Vec<_>>().join(","),
                        i.leader.map_or("?".into(), name),
                        i.approximate_keys
                    );
                }
            }
        }
        DbCommand::Status => {
            let r = client.regions().await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r.nodes)?);
            } else {
                println!("{:<12} {:<22} {:<6} LEADS", "NODE", "ADDRESS", "UP");
                for n in &r.nodes {
                    let leads = r.regions.iter().filter(|i| i.leader == Some(n.id)).count();
                    println!("{:<12} {:<22} {:<6} {}", n.name, n.addr, if n.up { "yes" } else { "NO" }, leads);
                }
                println!("{} regions", r.regions.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
