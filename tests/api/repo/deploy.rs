//! The deployment artefacts under `deploy/` agree with the server: port, path prefix, probe paths (which a
//! running server answers with 200), the Prometheus path, the metric names the autoscaler uses, the nginx
//! WebSocket location and the Dockerfile; and the ConfigMap/Secret templates are refused by the server as
//! shipped (every template marker is caught) but accepted once the marked values and the documented missing
//! secrets are filled in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use chatbox::config::{EnvVars, RawConfig};
use serde_norway::Value;

use crate::repo::config_doc::env_vars_read_by_code;
use crate::support::app::spawn_app;

const PREFIX: &str = "/chatbox";
const PORT: u64 = 8080;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*key],
        })
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// Environment variables named in the ConfigMap and Secret template, with their values.
fn template_env() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (file, field) in [
        ("deploy/kubernetes/configmap.yaml", "data"),
        ("deploy/kubernetes/secret.template.yaml", "stringData"),
    ] {
        let doc = yaml(file);
        let map = doc[field]
            .as_mapping()
            .unwrap_or_else(|| panic!("{file}: no {field}"));
        for (k, v) in map {
            pairs.push((
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    pairs
}

/// Whether `name` is an environment variable the server reads (`LLM_PROVIDER_1_ID` matches the
/// `LLM_PROVIDER_<n>_ID` family).
fn read_by_server(name: &str, known: &std::collections::BTreeSet<String>) -> bool {
    if known.contains(name) {
        return true;
    }
    let Some(rest) = name.strip_prefix("LLM_PROVIDER_") else {
        return false;
    };
    let Some((n, field)) = rest.split_once('_') else {
        return false;
    };
    n.parse::<usize>().is_ok() && known.contains(&format!("LLM_PROVIDER_<n>_{field}"))
}

#[tokio::test]
async fn probe_and_metrics_paths_of_the_deployment_answer_on_a_running_server() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let c = container(&deployment);
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(PORT));
    let port_name = c["ports"][0]["name"].as_str().unwrap();
    let app = spawn_app().await;
    let origin = app.base.trim_end_matches(PREFIX).to_string();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let path = str_at(c, &[probe, "httpGet", "path"]);
        assert!(path.starts_with(PREFIX), "{probe}: {path}");
        let port = &c[probe]["httpGet"]["port"];
        assert!(
            port.as_str() == Some(port_name) || port.as_u64() == Some(PORT),
            "{probe} port {port:?}"
        );
        let status = app
            .http
            .get(format!("{origin}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{probe} {path}");
    }
    assert_eq!(
        str_at(c, &["livenessProbe", "httpGet", "path"]),
        format!("{PREFIX}/healthz")
    );
    assert_eq!(
        str_at(c, &["readinessProbe", "httpGet", "path"]),
        format!("{PREFIX}/readyz")
    );

    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some("8080"));
    let metrics_path = annotations["prometheus.io/path"].as_str().unwrap();
    assert_eq!(metrics_path, format!("{PREFIX}/metrics/prometheus"));
    let response = app
        .http
        .get(format!("{origin}{metrics_path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let exposition = response.text().await.unwrap();

    let hpa = yaml("deploy/kubernetes/hpa.yaml");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let rendered = chatbox::metrics::Metrics::new().render();
    let mut pod_metrics = Vec::new();
    let mut external_metrics = Vec::new();
    for metric in hpa["spec"]["metrics"].as_sequence().unwrap() {
        let (field, list) = match metric["type"].as_str() {
            Some("Pods") => ("pods", &mut pod_metrics),
            Some("External") => ("external", &mut external_metrics),
            _ => continue,
        };
        let name = str_at(metric, &[field, "metric", "name"]);
        assert!(
            exposition.contains(&format!("\n{name} "))
                || rendered.contains(&format!("# TYPE {name} ")),
            "HPA metric {name} is not exported by the server"
        );
        list.push(name.to_string());
    }
    // Per-pod figure: connections on this pod. Global figure (every pod reports the store's count):
    // active sessions, an External metric so the replica count does not multiply it.
    assert_eq!(pod_metrics, ["chatbox_websocket_connections_total"]);
    assert_eq!(external_metrics, ["chatbox_active_sessions_total"]);
    app.stop().await;
}

#[test]
fn service_pdb_hpa_and_network_policy_select_the_deployment_and_its_port() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let service = yaml("deploy/kubernetes/service.yaml");
    assert_eq!(&service["spec"]["selector"], labels);
    let target = &service["spec"]["ports"][0]["targetPort"];
    assert!(
        target.as_str() == Some("http") || target.as_u64() == Some(PORT),
        "{target:?}"
    );
    let pdb = yaml("deploy/kubernetes/pdb.yaml");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let policy = yaml("deploy/kubernetes/networkpolicy.yaml");
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], labels);
    // Reference 9.2.18: the Go policy admitted only ingress-nginx, so Prometheus could not scrape.
    let rules = policy["spec"]["ingress"].as_sequence().unwrap();
    let admits = |who: &str| {
        rules.iter().any(|rule| {
            serde_norway::to_string(&rule["from"])
                .unwrap()
                .contains(who)
                && rule["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"].as_u64() == Some(PORT))
        })
    };
    assert!(
        admits("ingress-nginx"),
        "ingress controller not admitted on 8080"
    );
    assert!(admits("prometheus"), "Prometheus not admitted on 8080");
    let ingress = yaml("deploy/kubernetes/ingress.yaml");
    let path = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(path["path"].as_str(), Some(PREFIX));
    assert_eq!(
        &path["backend"]["service"]["name"],
        &service["metadata"]["name"]
    );
}

#[test]
fn every_variable_the_deployment_sets_is_read_by_the_server() {
    let known = env_vars_read_by_code();
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let mut names: Vec<String> = template_env().into_iter().map(|(k, _)| k).collect();
    for item in container(&deployment)["env"].as_sequence().unwrap() {
        names.push(item["name"].as_str().unwrap().to_string());
    }
    let mut in_env = false;
    for line in read("deploy/Dockerfile").lines().map(str::trim) {
        in_env = in_env || line.starts_with("ENV ");
        if in_env {
            let rest = line.trim_start_matches("ENV ").trim_end_matches('\\');
            for pair in rest.split_whitespace().filter(|p| p.contains('=')) {
                names.push(pair.split('=').next().unwrap().to_string());
            }
            in_env = line.ends_with('\\');
        }
    }
    for name in &names {
        assert!(
            read_by_server(name, &known),
            "{name} is set by deploy/ but the server does not read it"
        );
    }
    assert!(names.iter().any(|n| n == "CHATBOX_DATA_DIR"));
}

#[test]
fn the_termination_grace_period_covers_the_whole_shutdown() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop = at(
        container(&deployment),
        &["lifecycle", "preStop", "exec", "command"],
    );
    assert_eq!(pre_stop[0].as_str(), Some("sleep"), "{pre_stop:?}");
    let pause: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    let shutdown = template_env()
        .into_iter()
        .find(|(k, _)| k == "SHUTDOWN_TIMEOUT")
        .map(|(_, v)| chatbox::config::parse_duration(&v).unwrap())
        .unwrap();
    let needed = std::time::Duration::from_secs(pause) + chatbox::app::shutdown_budget(shutdown);
    assert!(
        std::time::Duration::from_secs(grace) >= needed,
        "terminationGracePeriodSeconds {grace} s < preStop {pause} s + shutdown {:?}",
        chatbox::app::shutdown_budget(shutdown)
    );
}

#[test]
fn the_templates_are_refused_as_shipped_and_accepted_once_filled() {
    let dir = tempfile::tempdir().unwrap();
    let base = || {
        let mut env = EnvVars::from_pairs(template_env());
        env.set("CHATBOX_DATA_DIR", dir.path().display().to_string());
        env
    };
    let accepts = |env: &EnvVars| {
        RawConfig::default()
            .into_settings(env)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(
        accepts(&base()).is_err(),
        "the shipped templates must not start a server"
    );

    // What an operator fills in: the marked values and the two secrets the template leaves out.
    let marked: Vec<String> = template_env()
        .into_iter()
        .filter(|(_, v)| chatbox::config::contains_placeholder(v))
        .map(|(k, _)| k)
        .collect();
    assert!(marked.len() >= 3, "{marked:?}");
    let filled_value = |name: &str| match name {
        "JWT_SECRET" => "Vq7Lm2Rt9Xw4Kp8Zn3Hs6Jd1Fb5Gc0Ny".to_string(),
        "ENCRYPTION_KEY" => {
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0".to_string()
        }
        "WS_ALLOWED_ORIGINS" => "https://chat.example.org".to_string(),
        other => panic!("no test value for the marked variable {other}"),
    };
    let fill = |env: &mut EnvVars, except: Option<&str>| {
        for name in &marked {
            if Some(name.as_str()) != except {
                env.set(name.clone(), filled_value(name));
            }
        }
        env.set("MONGO_URI", "mongodb://chatbox:pw@mongodb:27017/chat");
        env.set("LLM_PROVIDER_1_API_KEY", "sk-abc");
    };
    let mut env = base();
    fill(&mut env, None);
    accepts(&env).unwrap();
    for name in &marked {
        let mut env = base();
        fill(&mut env, Some(name));
        assert!(
            accepts(&env).is_err(),
            "the template value of {name} would be accepted"
        );
    }
    let mut env = base();
    fill(&mut env, None);
    env.set("LLM_PROVIDER_1_API_KEY", "");
    assert!(
        accepts(&env).is_err(),
        "a missing API key must stop a production server"
    );
}

#[test]
fn nginx_passes_the_websocket_upgrade_without_buffering() {
    let conf = read("deploy/nginx/chatbox.conf");
    let start = conf
        .find(&format!("location = {PREFIX}/ws"))
        .expect("an exact location for the WebSocket");
    let block = &conf[start..start + conf[start..].find('}').unwrap()];
    for directive in [
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $",
        "proxy_buffering off;",
    ] {
        assert!(
            block.contains(directive),
            "missing in the WebSocket location: {directive}"
        );
    }
    let timeout: u64 = block
        .split("proxy_read_timeout")
        .nth(1)
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|n| n.parse().ok())
        .expect("proxy_read_timeout");
    assert!(
        timeout > 60,
        "the read timeout must exceed the server's pong wait (60 s): {timeout}"
    );
    assert!(conf.contains(&format!("server 127.0.0.1:{PORT};")));
    assert!(conf.contains(&format!("location {PREFIX}/ {{")));
}

#[test]
fn the_dockerfile_builds_in_stages_runs_unprivileged_and_checks_health() {
    let dockerfile = read("deploy/Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage build"
    );
    assert!(dockerfile.contains("cargo build --release"));
    assert!(lines.contains(&format!("EXPOSE {PORT}").as_str()));
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    let health = lines
        .iter()
        .position(|l| l.starts_with("HEALTHCHECK"))
        .expect("HEALTHCHECK");
    let check = lines[health..]
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        check.contains("${CHATBOX_PATH_PREFIX}/healthz")
            || check.contains(&format!("{PREFIX}/healthz")),
        "{check}"
    );
    assert!(dockerfile.contains(&format!("CHATBOX_PATH_PREFIX={PREFIX}")));
    assert!(dockerfile.contains(&format!("SERVER_PORT={PORT}")));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("VOLUME") && l.contains("/data"))
    );
}
