use std::fs;

use super::*;

const CA: &str = "-----BEGIN CERTIFICATE-----\nTUlJQm90Qm90dGxlQ0E=\n-----END CERTIFICATE-----\n";
const SYSTEM_ROOT: &str =
    "-----BEGIN CERTIFICATE-----\nU3lzdGVtUm9vdA==\n-----END CERTIFICATE-----";

fn tree(files: &[(&str, &str)], dirs: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for d in dirs {
        fs::create_dir_all(root.path().join(d)).unwrap();
    }
    for (f, text) in files {
        let p = root.path().join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    root
}

fn count(path: &Path) -> usize {
    fs::read_to_string(path)
        .unwrap()
        .matches("TUlJQm90Qm90dGxlQ0E=")
        .count()
}

fn rel(root: &Path, locs: &[PathBuf]) -> Vec<String> {
    locs.iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

/// (name, files, dirs, expected locations, expected bundle)
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
    Vec<&'static str>,
    &'static str,
);

#[test]
fn distributions_get_anchors_and_bundles_once() {
    // (name, files, dirs, expected locations, expected bundle)
    let table: Vec<Case> = vec![
        (
            "debian",
            vec![
                ("etc/debian_version", "12\n"),
                ("etc/ssl/certs/ca-certificates.crt", SYSTEM_ROOT),
            ],
            vec!["usr/local/share/ca-certificates"],
            vec![
                STANDALONE,
                DEBIAN_ANCHOR,
                "etc/ssl/certs/ca-certificates.crt",
            ],
            "etc/ssl/certs/ca-certificates.crt",
        ),
        (
            "alpine",
            vec![
                ("etc/alpine-release", "3.20\n"),
                ("etc/ssl/cert.pem", SYSTEM_ROOT),
            ],
            vec![],
            vec![STANDALONE, "etc/ssl/cert.pem"],
            "etc/ssl/cert.pem",
        ),
        (
            "fedora",
            vec![
                (
                    "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                    SYSTEM_ROOT,
                ),
                ("etc/pki/tls/certs/ca-bundle.crt", SYSTEM_ROOT),
            ],
            vec![RHEL_ANCHORS],
            vec![
                STANDALONE,
                "etc/pki/ca-trust/source/anchors/bot-bottle.pem",
                "etc/pki/tls/certs/ca-bundle.crt",
                "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            ],
            "etc/pki/tls/certs/ca-bundle.crt",
        ),
        ("bare", vec![], vec![], vec![STANDALONE], STANDALONE),
    ];
    for (name, files, dirs, want, want_bundle) in table {
        let root = tree(&files, &dirs);
        let r = root.path();
        let first = install(r, CA).unwrap();
        assert_eq!(rel(r, &first.locations), want, "{name}");
        assert_eq!(first.bundle, r.join(want_bundle), "{name}");
        // Installing again changes nothing: never appended twice.
        let again = install(r, CA).unwrap();
        assert_eq!(again, first, "{name}");
        for loc in &first.locations {
            assert_eq!(count(loc), 1, "{name}: {}", loc.display());
        }
        let bundle = fs::read_to_string(&first.bundle).unwrap();
        if want_bundle != STANDALONE {
            assert!(
                bundle.contains("U3lzdGVtUm9vdA=="),
                "{name}: system roots kept"
            );
            assert!(
                bundle.contains("-----END CERTIFICATE-----\n-----BEGIN"),
                "{name}: newline between certs"
            );
        }
        let env = first.env();
        assert_eq!(env.len(), CA_ENV_VARS.len());
        assert!(env
            .iter()
            .all(|(_, v)| *v == first.bundle.display().to_string()));
    }
}

#[test]
fn garbage_is_refused() {
    let root = tree(&[], &[]);
    for bad in ["", "hello", "-----BEGIN CERTIFICATE-----\nabc"] {
        assert!(
            matches!(install(root.path(), bad), Err(CaError::NotPem)),
            "{bad:?}"
        );
    }
    assert!(!root.path().join(STANDALONE).exists());
}
