//! Typed configuration, layered as operators expect: built-in defaults, then a TOML file, then
//! `ULTRACLOUD_*` environment variables, then command-line flags (each layer overrides the one
//! before).
//!
//! A service describes its configuration as one serde struct whose `Default` makes a single node
//! work with zero configuration. Flags are a second struct of `Option`s that serializes only what
//! the user set. Errors name the field, the offending value, where it came from and what is
//! allowed, so that `ULTRACLOUD_ADMIN_LISTEN=abc` is fixable from the message alone.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Metadata};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Prefix of the environment variables read by every service.
pub const ENV_PREFIX: &str = "ULTRACLOUD_";

/// A configuration that could not be loaded; every entry names a field and what was wrong.
#[derive(Debug)]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// An error for one field whose value passed the type check but not the service's own rules.
    pub fn invalid(field: &str, value: impl fmt::Display, allowed: &str) -> Self {
        Self { problems: vec![format!("invalid value `{value}` for `{field}`: {allowed}")] }
    }

    /// The individual problems, one per offending field.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "configuration error: {one}"),
            many => {
                write!(f, "configuration errors:")?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Semantic checks a configuration runs after it parsed (ranges, mutually exclusive options…).
pub trait Validate {
    /// Returns an error naming the field, the value and what is allowed.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Loads `T` from its defaults, an optional TOML `file`, the environment and the set `flags`.
///
/// Only environment variables that name a top-level field of `T` are read
/// (`ULTRACLOUD_DATA_DIR` → `data_dir`; nested fields use `__`: `ULTRACLOUD_RAFT__HEARTBEAT_MS`),
/// so variables meant for other tools (`ULTRACLOUD_LAB_DIR`, …) never trip a service. Unknown keys
/// in the file are rejected when `T` denies unknown fields, which catches typos.
pub fn load<T, F>(file: Option<&Path>, flags: &F) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
    F: Serialize,
{
    load_with_env(file, flags, std::env::vars())
}

/// [`load`] with an explicit environment, for tests and for the node agent, which computes the
/// environment of its children.
pub fn load_with_env<T, F>(
    file: Option<&Path>,
    flags: &F,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
    F: Serialize,
{
    let defaults = T::default();
    let fields = top_level_fields(&defaults);
    let mut figment = Figment::from(Serialized::defaults(&defaults));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError {
                problems: vec![format!("config file {} does not exist or is not a file", path.display())],
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(ENV_PREFIX).map(|rest| fields.contains(&top_level_env_key(rest))).unwrap_or(false)
        })
        .collect();
    figment = figment.merge(env_provider(env));
    figment = figment.merge(Serialized::defaults(flags));

    let config: T = figment.extract().map_err(|e| from_figment(&figment, e))?;
    config.validate()?;
    Ok(config)
}

fn top_level_env_key(rest: &str) -> String {
    rest.split("__").next().unwrap_or_default().to_ascii_lowercase()
}

/// Figment's `Env` reads the process environment; we give it our filtered snapshot instead by
/// rendering it into a provider of its own.
fn env_provider(vars: Vec<(String, String)>) -> impl figment::Provider {
    EnvSnapshot(vars)
}

struct EnvSnapshot(Vec<(String, String)>);

impl figment::Provider for EnvSnapshot {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_profile, keys| format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase()))
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (key, value) in &self.0 {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else { continue };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            let parsed: figment::value::Value = value.parse().unwrap_or_else(|_| value.clone().into());
            insert_path(&mut dict, &path, parsed);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry(first.clone()).or_insert_with(|| figment::value::Dict::new().into());
            if let figment::value::Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

fn top_level_fields<T: Serialize>(value: &T) -> BTreeSet<String> {
    match figment::value::Value::serialize(value) {
        Ok(figment::value::Value::Dict(_, dict)) => dict.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

/// Rewrites figment's errors into one line per field: field, value, source, what is allowed.
fn from_figment(figment: &Figment, err: figment::Error) -> ConfigError {
    let problems = err
        .into_iter()
        .map(|e| {
            let field = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" (from {} {src})", m.name),
                    None => match m.interpolate(&figment::Profile::Default, &e.path) {
                        s if m.name.contains("environment") => format!(" (from {s})"),
                        _ => format!(" (from {})", m.name),
                    },
                })
                .unwrap_or_default();
            let value = figment
                .find_value(&field)
                .ok()
                .map(|v| render_value(&v))
                .map(|v| format!(" value {v}"))
                .unwrap_or_default();
            let field = if field.is_empty() { "configuration".to_owned() } else { format!("`{field}`") };
            format!("invalid{value} for {field}{source}: {}", e.kind)
        })
        .collect();
    ConfigError { problems }
}

fn render_value(v: &figment::value::Value) -> String {
    use figment::value::Value;
    match v {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{c:?}"),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match n.to_u128() {
            Some(u) => u.to_string(),
            None => {
                n.to_i128().map(|i| i.to_string()).or_else(|| n.to_f64().map(|f| f.to_string())).unwrap_or_default()
            }
        },
        Value::Empty(_, _) => "empty".to_owned(),
        Value::Dict(_, _) => "(a table)".to_owned(),
        Value::Array(_, _) => "(a list)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::net::SocketAddr;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        admin_listen: SocketAddr,
        name: String,
        replicas: u8,
        mode: Mode,
        raft: Raft,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Fast,
        Safe,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Raft {
        heartbeat_ms: u64,
    }

    impl Default for Raft {
        fn default() -> Self {
            Self { heartbeat_ms: 100 }
        }
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                admin_listen: "127.0.0.1:9000".parse().unwrap(),
                name: "default".into(),
                replicas: 1,
                mode: Mode::Fast,
                raft: Raft::default(),
            }
        }
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.replicas == 0 || self.replicas > 7 {
                return Err(ConfigError::invalid("replicas", self.replicas, "between 1 and 7"));
            }
            Ok(())
        }
    }

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn toml_file(dir: &tempfile::TempDir, body: &str) -> std::path::PathBuf {
        let path = dir.path().join("svc.toml");
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn zero_config_gives_defaults() {
        let c: Demo = load_with_env(None, &Flags::default(), env(&[])).unwrap();
        assert_eq!(c, Demo::default());
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = toml_file(&dir, "name = \"file\"\nreplicas = 3\nmode = \"safe\"\n[raft]\nheartbeat_ms = 50\n");
        let c: Demo = load_with_env(Some(&file), &Flags::default(), env(&[])).unwrap();
        assert_eq!((c.name.as_str(), c.replicas, c.raft.heartbeat_ms), ("file", 3, 50));
        assert_eq!(c.mode, Mode::Safe);

        let e = env(&[("ULTRACLOUD_NAME", "env"), ("ULTRACLOUD_RAFT__HEARTBEAT_MS", "70")]);
        let c: Demo = load_with_env(Some(&file), &Flags::default(), e.clone()).unwrap();
        assert_eq!((c.name.as_str(), c.replicas, c.raft.heartbeat_ms), ("env", 3, 70));

        let flags = Flags { name: Some("flag".into()) };
        let c: Demo = load_with_env(Some(&file), &flags, e).unwrap();
        assert_eq!((c.name.as_str(), c.replicas), ("flag", 3));
    }

    #[test]
    fn unrelated_env_vars_are_ignored() {
        let e = env(&[("ULTRACLOUD_LAB_DIR", "/x"), ("PATH", "/bin"), ("ULTRACLOUD_QUICKSTART_KEEP_VM", "1")]);
        let c: Demo = load_with_env(None, &Flags::default(), e).unwrap();
        assert_eq!(c, Demo::default());
    }

    #[test]
    fn bad_env_value_names_field_value_source_and_expectation() {
        let e = env(&[("ULTRACLOUD_ADMIN_LISTEN", "abc")]);
        let err = load_with_env::<Demo, _>(None, &Flags::default(), e).unwrap_err().to_string();
        assert!(err.contains("`admin_listen`"), "{err}");
        assert!(err.contains("\"abc\""), "{err}");
        assert!(err.contains("ULTRACLOUD_ADMIN_LISTEN"), "{err}");
        assert!(err.contains("socket address"), "{err}");
    }

    #[test]
    fn bad_file_value_names_the_file_and_allowed_variants() {
        let dir = tempfile::tempdir().unwrap();
        let file = toml_file(&dir, "mode = \"turbo\"\n");
        let err = load_with_env::<Demo, _>(Some(&file), &Flags::default(), env(&[])).unwrap_err().to_string();
        assert!(err.contains("`mode`"), "{err}");
        assert!(err.contains("turbo"), "{err}");
        assert!(err.contains("svc.toml"), "{err}");
        assert!(err.contains("fast") && err.contains("safe"), "{err}");
    }

    #[test]
    fn unknown_key_in_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = toml_file(&dir, "replcas = 3\n");
        let err = load_with_env::<Demo, _>(Some(&file), &Flags::default(), env(&[])).unwrap_err().to_string();
        assert!(err.contains("replcas"), "{err}");
    }

    #[test]
    fn out_of_range_number_is_reported() {
        let e = env(&[("ULTRACLOUD_REPLICAS", "900")]);
        let err = load_with_env::<Demo, _>(None, &Flags::default(), e).unwrap_err().to_string();
        assert!(err.contains("`replicas`") && err.contains("900"), "{err}");
    }

    #[test]
    fn semantic_validation_runs_after_parsing() {
        let e = env(&[("ULTRACLOUD_REPLICAS", "0")]);
        let err = load_with_env::<Demo, _>(None, &Flags::default(), e).unwrap_err().to_string();
        assert_eq!(err, "configuration error: invalid value `0` for `replicas`: between 1 and 7");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_with_env::<Demo, _>(Some(Path::new("/nonexistent/x.toml")), &Flags::default(), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.toml"), "{err}");
    }
}
