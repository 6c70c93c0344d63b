//! Environment variables over file values: each helper takes the snapshot and the variable's name, so a
//! setting's variable is named once, next to the value it overrides.

use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, EnvVars, parse_duration};

/// Splits a comma-separated list, trimming items and dropping empty ones.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The variable `var` if set, else the file value.
pub fn var_or(env: &EnvVars, var: &str, file: Option<&str>) -> Option<String> {
    env.get(var).or(file).map(String::from)
}

/// Replaces `target` with the variable `var` when it is set.
pub fn env_string(env: &EnvVars, var: &str, target: &mut Option<String>) {
    if let Some(value) = env.get(var) {
        *target = Some(value.to_string());
    }
}

/// Replaces the secret `target` with the variable `var` when it is set.
pub fn env_secret(env: &EnvVars, var: &str, target: &mut Option<SecretString>) {
    if let Some(value) = env.get(var) {
        *target = Some(SecretString::from(value));
    }
}

/// Replaces the list `target` with the comma-separated variable `var` when it is set.
pub fn env_list(env: &EnvVars, var: &str, target: &mut Vec<String>) {
    if let Some(value) = env.get(var) {
        *target = split_list(value);
    }
}

/// The variable `var` parsed as `T`, if set; a value that does not parse is refused with `reason`.
pub fn env_parsed<T: FromStr>(
    env: &EnvVars,
    var: &str,
    reason: &str,
) -> Result<Option<T>, ConfigError> {
    env.get(var)
        .map(|value| value.parse().map_err(|_| ConfigError::invalid(var, reason)))
        .transpose()
}

/// Replaces `target` with the variable `var` parsed as `T` when it is set; a value that does not parse is
/// refused with `reason`.
pub fn env_parse_into<T: FromStr>(
    env: &EnvVars,
    var: &str,
    reason: &str,
    target: &mut T,
) -> Result<(), ConfigError> {
    if let Some(value) = env_parsed(env, var, reason)? {
        *target = value;
    }
    Ok(())
}

/// Replaces `target` with the variable `var` read as a Go duration when it is set.
pub fn env_duration(env: &EnvVars, var: &str, target: &mut Duration) -> Result<(), ConfigError> {
    if let Some(value) = env.get(var) {
        *target = parse_duration(value).map_err(|e| ConfigError::invalid(var, e))?;
    }
    Ok(())
}

/// A duration from the variable `var`, else the file text, else `default`; errors name `key`.
pub fn duration_setting(
    env: &EnvVars,
    var: &str,
    key: &str,
    file: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match env.get(var).or(file) {
        Some(text) => parse_duration(text).map_err(|e| ConfigError::invalid(key, e)),
        None => Ok(default),
    }
}

/// A count from the variable `var` (errors name it), else the file value, else `default`.
pub fn count_setting(
    env: &EnvVars,
    var: &str,
    file: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match env.get(var) {
        Some(text) => text.parse::<usize>().map_err(|_| {
            ConfigError::invalid(var, format!("must be a non-negative integer, got {text:?}"))
        }),
        None => Ok(file.unwrap_or(default)),
    }
}

/// A list from the comma-separated variable `var`, else the file list, else the comma-separated `default`.
pub fn list_setting(
    env: &EnvVars,
    var: &str,
    file: Option<&[String]>,
    default: &str,
) -> Vec<String> {
    match (env.get(var), file) {
        (Some(text), _) => split_list(text),
        (None, Some(list)) => list.to_vec(),
        (None, None) => split_list(default),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_variable_wins_over_the_file_and_the_file_over_the_default() {
        let env = EnvVars::from_pairs([("A", "5s"), ("N", "7"), ("L", " x, ,y ")]);
        let second = Duration::from_secs(1);
        assert_eq!(
            duration_setting(&env, "A", "a", Some("9s"), second).unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            duration_setting(&env, "B", "b", Some("9s"), second).unwrap(),
            Duration::from_secs(9)
        );
        assert_eq!(
            duration_setting(&env, "B", "b", None, second).unwrap(),
            second
        );
        let err = duration_setting(&env, "B", "b.key", Some("soon"), second).unwrap_err();
        assert!(err.to_string().starts_with("b.key:"), "{err}");
        assert_eq!(count_setting(&env, "N", Some(3), 1).unwrap(), 7);
        assert_eq!(count_setting(&env, "M", Some(3), 1).unwrap(), 3);
        assert_eq!(count_setting(&env, "M", None, 1).unwrap(), 1);
        assert!(count_setting(&env, "A", None, 1).is_err());
        assert_eq!(list_setting(&env, "L", None, ""), ["x", "y"]);
        assert_eq!(list_setting(&env, "K", None, "p,q"), ["p", "q"]);
        assert_eq!(var_or(&env, "N", Some("f")).as_deref(), Some("7"));
        assert_eq!(var_or(&env, "M", Some("f")).as_deref(), Some("f"));
    }

    #[test]
    fn overrides_replace_only_what_is_set_and_name_the_variable() {
        let env = EnvVars::from_pairs([("T", "250ms"), ("P", "x"), ("S", "a,b")]);
        let mut timeout = Duration::from_secs(1);
        env_duration(&env, "T", &mut timeout).unwrap();
        env_duration(&env, "U", &mut timeout).unwrap();
        assert_eq!(timeout, Duration::from_millis(250));
        let err = env_parsed::<u16>(&env, "P", "must be a port number").unwrap_err();
        assert_eq!(err.to_string(), "P: must be a port number");
        assert_eq!(env_parsed::<u16>(&env, "Q", "x").unwrap(), None);
        let mut port = 1u16;
        env_parse_into(&env, "Q", "x", &mut port).unwrap();
        assert_eq!(port, 1);
        assert!(env_parse_into(&env, "P", "x", &mut port).is_err());
        let mut list = vec!["old".to_string()];
        env_list(&env, "S", &mut list);
        assert_eq!(list, ["a", "b"]);
        let mut text = None;
        env_string(&env, "P", &mut text);
        assert_eq!(text.as_deref(), Some("x"));
    }
}
