//! Overrides on top of the file: `CUSTOS_*` environment variables and
//! `--set key=value` flags.
//!
//! `CUSTOS_KAFKA_GROUP_ID=x` sets `kafka.group_id`: the name after the
//! prefix is lowercased and matched against the configuration's tables, the
//! longest table name first, so keys that contain `_` work. A value takes
//! the type of the key it replaces (a string stays a string; a list may be
//! given as a TOML array or as comma-separated words).
//!
//! Under `kafka.client` (librdkafka properties, whose names are dotted) the
//! rest of the name is the property with `.` for `_`:
//! `CUSTOS_KAFKA_CLIENT_SASL_PASSWORD` and `--set
//! kafka.client.sasl.password=…` both set `sasl.password`.

use toml::Value;

/// Variables with the prefix that are not configuration keys.
const NOT_KEYS: &[&str] = &[
    "CUSTOS_CONFIG",
    "CUSTOS_LOG",
    "CUSTOS_LOG_FORMAT",
    "CUSTOS_CRASH_AT",
    "CUSTOS_VERIFIER_KEY",
];
const NOT_KEY_PREFIXES: &[&str] = &["CUSTOS_TEST_"];

pub fn apply_env(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<String>,
) {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("CUSTOS_"))
        .filter(|(k, _)| !NOT_KEYS.contains(&k.as_str()))
        .filter(|(k, _)| !NOT_KEY_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let tokens: Vec<String> = name["CUSTOS_".len()..]
            .to_lowercase()
            .split('_')
            .map(str::to_owned)
            .collect();
        match env_path(tree, &tokens).map(dotted_client_keys) {
            Some(path) => set(tree, &path, &value, &name, problems),
            None => problems.push(format!("{name}: names no configuration key")),
        }
    }
}

pub fn apply_set(tree: &mut Value, sets: &[String], problems: &mut Vec<String>) {
    for item in sets {
        let Some((key, value)) = item.split_once('=') else {
            problems.push(format!("--set `{item}`: expected key=value"));
            continue;
        };
        let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        let path = match path.as_slice() {
            [k, c, rest @ ..] if k == "kafka" && c == "client" && !rest.is_empty() => {
                vec![k.clone(), c.clone(), rest.join(".")]
            }
            _ => path,
        };
        if path.iter().any(String::is_empty) {
            problems.push(format!("--set `{item}`: bad key"));
            continue;
        }
        set(tree, &path, value, &format!("--set {key}"), problems);
    }
}

/// librdkafka property names are dotted: `kafka.client.sasl_password`
/// means `sasl.password`.
fn dotted_client_keys(mut path: Vec<String>) -> Vec<String> {
    if path.len() == 3 && path[0] == "kafka" && path[1] == "client" {
        path[2] = path[2].replace('_', ".");
    }
    path
}

/// Resolves `["kafka","group","id"]` to `["kafka","group_id"]` by walking
/// the tables of `tree`, longest table name first.
fn env_path(tree: &Value, tokens: &[String]) -> Option<Vec<String>> {
    let mut path = Vec::new();
    let mut node = tree;
    let mut i = 0;
    while i < tokens.len() {
        let table = node.as_table()?;
        let sub = (i + 1..tokens.len()).rev().find_map(|j| {
            let name = tokens[i..j].join("_");
            table
                .get(&name)
                .filter(|v| v.is_table())
                .map(|v| (j, name, v))
        });
        match sub {
            Some((j, name, v)) => {
                path.push(name);
                node = v;
                i = j;
            }
            None => {
                path.push(tokens[i..].join("_"));
                return Some(path);
            }
        }
    }
    None
}

fn set(tree: &mut Value, path: &[String], raw: &str, origin: &str, problems: &mut Vec<String>) {
    let mut node = tree;
    for part in &path[..path.len() - 1] {
        let Some(table) = node.as_table_mut() else {
            problems.push(format!("{origin}: `{part}` is not a table"));
            return;
        };
        node = table
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Default::default()));
    }
    let Some(table) = node.as_table_mut() else {
        problems.push(format!("{origin}: not inside a table"));
        return;
    };
    let leaf = &path[path.len() - 1];
    // librdkafka properties are strings, whatever they look like.
    let is_client_property = path.len() == 3 && path[0] == "kafka" && path[1] == "client";
    let value = if is_client_property {
        Ok(Value::String(raw.to_owned()))
    } else {
        typed(table.get(leaf), raw)
    };
    match value {
        Ok(v) => {
            table.insert(leaf.clone(), v);
        }
        Err(expected) => problems.push(format!("{origin}: expected {expected}")),
    }
}

/// Parses `raw` as the type of `current` (or guesses when the key is new).
fn typed(current: Option<&Value>, raw: &str) -> Result<Value, &'static str> {
    let parsed = || {
        format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match current {
        Some(Value::String(_)) => Ok(Value::String(raw.to_owned())),
        Some(Value::Integer(_)) => raw
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|_| "an integer"),
        Some(Value::Float(_)) => raw.trim().parse().map(Value::Float).map_err(|_| "a number"),
        Some(Value::Boolean(_)) => raw
            .trim()
            .parse()
            .map(Value::Boolean)
            .map_err(|_| "true or false"),
        Some(Value::Array(_)) => Ok(match parsed() {
            Some(v @ Value::Array(_)) => v,
            _ => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
        }),
        _ => Ok(parsed().unwrap_or_else(|| Value::String(raw.to_owned()))),
    }
}
