//! The layering is a compile-time fact: which crate may depend on which
//! (from `cargo metadata`) and which module may import which (from the
//! sources). README's Layout section shows the same map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo metadata`'s resolved graph: package id → (name, normal deps).
struct Graph {
    names: HashMap<String, String>,
    normal: HashMap<String, Vec<String>>,
}

impl Graph {
    fn load() -> Graph {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked", "--offline"])
            .current_dir(workspace_root())
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let names = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().expect("id").to_owned(),
                    p["name"].as_str().expect("name").to_owned(),
                )
            })
            .collect();
        let normal = meta["resolve"]["nodes"]
            .as_array()
            .expect("resolve nodes")
            .iter()
            .map(|node| {
                let deps = node["deps"]
                    .as_array()
                    .expect("deps")
                    .iter()
                    .filter(|dep| {
                        // A null kind is a normal dependency (not dev, not build).
                        dep["dep_kinds"]
                            .as_array()
                            .expect("dep_kinds")
                            .iter()
                            .any(|k| k["kind"].is_null())
                    })
                    .map(|dep| dep["pkg"].as_str().expect("pkg").to_owned())
                    .collect();
                (node["id"].as_str().expect("id").to_owned(), deps)
            })
            .collect();
        Graph { names, normal }
    }

    /// Names of every package `name` reaches through normal dependencies.
    fn reaches(&self, name: &str) -> BTreeSet<String> {
        let start = self
            .names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{name} is a workspace package"));
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(id) = todo.pop() {
            for dep in self.normal.get(&id).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen.iter().map(|id| self.names[id].clone()).collect()
    }
}

fn forbidden_in(reached: &BTreeSet<String>, forbidden: &[&str]) -> Vec<String> {
    reached
        .iter()
        .filter(|name| {
            forbidden
                .iter()
                .any(|f| name.as_str() == *f || name.starts_with(&format!("{f}-")))
        })
        .cloned()
        .collect()
}

#[test]
fn the_core_crate_reaches_no_runtime_database_or_grpc_crate() {
    let graph = Graph::load();
    let reached = graph.reaches("identity-core");
    assert!(reached.contains("uuid"), "the graph was read: {reached:?}");
    let found = forbidden_in(&reached, &["tokio", "tonic", "diesel", "redis"]);
    assert!(found.is_empty(), "identity-core depends on {found:?}");
}

#[test]
fn the_store_crate_reaches_no_grpc_crate() {
    let graph = Graph::load();
    let reached = graph.reaches("identity-store");
    assert!(
        reached.contains("diesel"),
        "the graph was read: {reached:?}"
    );
    let found = forbidden_in(&reached, &["tonic", "prost"]);
    assert!(found.is_empty(), "identity-store depends on {found:?}");
    assert!(
        !reached.contains("identity"),
        "the store depends on the service"
    );
}

#[test]
fn the_client_crate_reaches_neither_the_store_nor_the_service() {
    // Other services link it: it brings identity's rules (core), never its
    // database code or its server.
    let graph = Graph::load();
    let reached = graph.reaches("identity-client");
    assert!(
        reached.contains("identity-core") && reached.contains("tonic"),
        "the graph was read: {reached:?}"
    );
    let found = forbidden_in(&reached, &["diesel", "redis", "identity-store"]);
    assert!(found.is_empty(), "identity-client depends on {found:?}");
    assert!(
        !reached.contains("identity"),
        "identity-client depends on the service"
    );
}

#[test]
fn the_walls_check_would_notice_a_forbidden_crate() {
    // The service crate does depend on tonic and tokio: the same check
    // must say so, or the two tests above prove nothing.
    let graph = Graph::load();
    let found = forbidden_in(&graph.reaches("identity"), &["tokio", "tonic", "diesel"]);
    for expected in ["tokio", "tonic", "diesel"] {
        assert!(found.iter().any(|f| f == expected), "{found:?}");
    }
}

/// Rust sources under `dir` (relative to the service crate's `src`).
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(path: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(path).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir),
        &mut out,
    );
    out
}

/// Lines of `text` outside comments that mention any of `needles`.
fn mentions(text: &str, needles: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with("//"))
        .filter(|line| needles.iter().any(|n| line.contains(n)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn use_cases_never_see_grpc_types_nor_the_layers_above_them() {
    let service = sources("service");
    assert!(service.len() > 5, "the service layer was read");
    let mut found = Vec::new();
    for (path, text) in &service {
        for line in mentions(
            text,
            &[
                "tonic",
                "prost",
                "crate::proto",
                "crate::transport",
                "crate::server",
            ],
        ) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_transport_layer_never_reaches_into_the_server() {
    let mut found = Vec::new();
    for (path, text) in sources("transport") {
        for line in mentions(&text, &["crate::server"]) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn use_cases_open_no_database_connection_of_their_own() {
    // The revocation listener's connections live in identity-store
    // (`identity_store::listen`); the use cases reach the database only
    // through the store's API.
    let mut found = Vec::new();
    for (path, text) in sources("service") {
        for line in mentions(&text, &["diesel", "pg_tls", "tokio_postgres"]) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_provider_fetches_keys_and_knows_neither_use_cases_nor_grpc() {
    // ExchangeToken is built in server.rs and reaches the provider's keys
    // through identity_core::provider::TokenVerifier: no import circle.
    let provider = sources("provider");
    assert!(
        provider.iter().any(|(path, _)| path.ends_with("jwks.rs")),
        "the provider module was read"
    );
    let mut found = Vec::new();
    for (path, text) in &provider {
        for line in mentions(
            text,
            &[
                "crate::service",
                "crate::transport",
                "crate::server",
                "tonic",
            ],
        ) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn use_cases_never_import_the_provider() {
    // The other half of the wall above: ExchangeToken gets the provider's
    // verifier as an identity_core::provider::TokenVerifier, and the names
    // reserved for the service's own accounts live in identity_core::roles,
    // so the use cases need nothing of the JWKS fetcher or its settings.
    let service = sources("service");
    assert!(
        service
            .iter()
            .any(|(path, _)| path.ends_with("exchange.rs")),
        "the service layer was read"
    );
    let mut found = Vec::new();
    for (path, text) in &service {
        for line in mentions(text, &["crate::provider"]) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn use_cases_and_the_provider_read_no_settings_of_their_own() {
    // `config` and `cli` own every setting and its validation: the use
    // cases and the provider get typed, checked values through their
    // constructors (server.rs), so each setting is read in one place.
    let mut found = Vec::new();
    for dir in ["service", "provider"] {
        let files = sources(dir);
        assert!(files.len() > 1, "the {dir} module was read");
        for (path, text) in &files {
            for line in mentions(text, &["crate::config", "crate::cli", "clap"]) {
                found.push(format!("{}: {line}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn only_config_and_cli_define_command_line_arguments() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = sources("");
    assert!(
        all.iter().any(|(path, _)| path.ends_with("cli.rs")),
        "the sources were read"
    );
    let mut found = Vec::new();
    for (path, text) in &all {
        let relative = path.strip_prefix(&src).expect("a path under src");
        if relative.starts_with("config")
            || relative.starts_with("cli")
            || relative == Path::new("cli.rs")
        {
            continue;
        }
        for line in mentions(text, &["clap"]) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// Rust sources of every crate in `crates/` and `services/`, without the
/// tests: `tests/` folders, `tests.rs` files and the `#[cfg(test)] mod`
/// that ends a file (clippy keeps test modules last).
fn workspace_sources() -> Vec<(PathBuf, String)> {
    fn walk(path: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(path).expect("a source folder") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !["tests", "target"].contains(&name) {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && name != "tests.rs" {
                let text = std::fs::read_to_string(&path).expect("a source file");
                out.push((path, without_test_module(&text)));
            }
        }
    }
    let mut out = Vec::new();
    for dir in ["crates", "services"] {
        walk(&workspace_root().join(dir), &mut out);
    }
    out
}

fn without_test_module(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|pair| {
            pair[0].trim() == "#[cfg(test)]"
                && pair[1].trim_start().starts_with("mod ")
                && pair[1].trim_end().ends_with('{')
        })
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// Every `Result<…, String>` in `text` outside comments: errors as bare
/// text, which callers can neither match on nor tell apart.
fn string_errors(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim_start) {
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("Result<") {
            let args = &rest[at + "Result<".len()..];
            // The generic arguments up to the matching `>`; the last one at
            // depth zero is the error type.
            let (mut depth, mut last_comma, mut end) = (0i32, None, None);
            let bytes = args.as_bytes();
            for (i, c) in args.char_indices() {
                match c {
                    '<' | '(' | '[' => depth += 1,
                    '>' if i > 0 && bytes[i - 1] == b'-' => {}
                    '>' | ')' | ']' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    '>' | ')' | ']' => depth -= 1,
                    ',' if depth == 0 => last_comma = Some(i),
                    _ => {}
                }
            }
            if let (Some(comma), Some(end)) = (last_comma, end) {
                let error = args[comma + 1..end].trim();
                if error == "String" || error == "std::string::String" {
                    found.push(line.to_owned());
                }
            }
            rest = args;
        }
    }
    found
}

#[test]
fn no_layer_reports_its_errors_as_bare_strings() {
    // One thiserror type per layer: identity_core's (Invalid, QuotaError,
    // KeyError, …), identity_store's StoreError and friends, the
    // service's Error. A String error cannot be matched on, and the
    // message is all a caller ever gets.
    assert_eq!(
        string_errors(
            "pub fn f() -> Result<Option<Arc<Config>>, String> {\n\
             type T = Result<(String, u8), String>;\n\
             // fn commented() -> Result<(), String>\n\
             fn ok() -> Result<String, Error> {"
        )
        .len(),
        2,
        "the check would notice a String error"
    );
    let sources = workspace_sources();
    assert!(
        sources
            .iter()
            .any(|(path, _)| path.ends_with("identity-core/src/validation.rs")),
        "the workspace was read"
    );
    let mut found = Vec::new();
    for (path, text) in &sources {
        let lines = string_errors(text);
        let shown = path.strip_prefix(workspace_root()).unwrap_or(path);
        for line in lines {
            found.push(format!("{}: {line}", shown.display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// The top-level modules of the service crate, file modules (`cli.rs`)
/// and folder modules (`service/`) alike.
const MODULES: &[&str] = &[
    "admin_token",
    "cli",
    "commands",
    "config",
    "infra",
    "proto",
    "provider",
    "server",
    "service",
    "telemetry",
    "transport",
];

/// The modules named in `text` as `crate::<module>` or inside a
/// `crate::{…}` list, outside comment lines.
fn crate_imports(text: &str) -> BTreeSet<&'static str> {
    let code: String = text
        .lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::`, `other_crate::`, `x::crate::`: not this crate's root.
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '$'))
        {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        // In a `{…}` list every top-level entry, otherwise the first path
        // segment.
        let mut entries = vec![rest];
        if let Some(list) = rest.strip_prefix('{') {
            entries.clear();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in list.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        entries.push(&list[start..i]);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        entries.push(&list[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        }
        for entry in entries {
            let name: String = entry
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(module) = MODULES.iter().find(|m| **m == name) {
                found.insert(*module);
            }
        }
    }
    found
}

/// Which top-level module imports which, from non-test code: `tests.rs`
/// files, `tests/` folders and the `#[cfg(test)] mod` that ends a file
/// are left out (tests may reach anywhere).
fn module_graph() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<&'static str, BTreeSet<&'static str>> =
        MODULES.iter().map(|m| (*m, BTreeSet::new())).collect();
    for (path, text) in sources("") {
        let relative = path.strip_prefix(&src).expect("a path under src");
        if relative.file_name().is_some_and(|n| n == "tests.rs")
            || relative.components().any(|c| c.as_os_str() == "tests")
        {
            continue;
        }
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("");
        let Some(module) = MODULES
            .iter()
            .find(|m| first == **m || first == format!("{m}.rs"))
        else {
            continue; // lib.rs, main.rs: the roots, not layers
        };
        let imports = graph.get_mut(module).expect("every module is a node");
        for import in crate_imports(&without_test_module(&text)) {
            if import != *module {
                imports.insert(import);
            }
        }
    }
    graph
}

/// Every import circle of `graph`, each as the path that closes it
/// (`a → b → a`), found by a depth-first walk.
fn cycles(graph: &BTreeMap<&'static str, BTreeSet<&'static str>>) -> BTreeSet<String> {
    fn walk(
        node: &'static str,
        graph: &BTreeMap<&'static str, BTreeSet<&'static str>>,
        path: &mut Vec<&'static str>,
        done: &mut BTreeSet<&'static str>,
        found: &mut BTreeSet<String>,
    ) {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node);
            found.insert(circle.join(" → "));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            walk(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node);
    }
    let mut found = BTreeSet::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        walk(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn no_two_modules_of_the_service_import_each_other_even_through_others() {
    // A circle means neither side can be read, tested or moved without the
    // other: the layers of README's Layout section only hold if each
    // module's imports point one way.
    let circle: BTreeMap<_, BTreeSet<_>> = [
        ("cli", ["config"].into()),
        ("config", ["service"].into()),
        ("service", ["cli"].into()),
        ("server", ["service"].into()),
    ]
    .into();
    assert_eq!(
        cycles(&circle).len(),
        1,
        "the check would notice a circle through three modules: {:?}",
        cycles(&circle)
    );
    assert_eq!(
        crate_imports(
            "use crate::{cli::{Command, Settings}, infra};\n// crate::server\n$crate::proto"
        ),
        ["cli", "infra"].into(),
        "imports in a list are read, comments and other crates' paths are not"
    );

    let graph = module_graph();
    assert!(
        graph["server"].contains("transport") && graph["transport"].contains("service"),
        "the sources were read: {graph:#?}"
    );
    let found = cycles(&graph);
    assert!(found.is_empty(), "import circles: {found:#?}\n{graph:#?}");
}

#[test]
fn telemetry_imports_no_other_module_of_the_service() {
    // Every layer logs and counts (`telemetry::metrics`), so telemetry must
    // sit below all of them: the per-RPC span layer, which knows client
    // addresses and method names, is transport's.
    let graph = module_graph();
    assert!(
        graph["server"].contains("telemetry"),
        "the sources were read: {graph:#?}"
    );
    assert!(
        graph["telemetry"].is_empty(),
        "telemetry imports {:?}",
        graph["telemetry"]
    );
}
