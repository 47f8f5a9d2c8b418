//! Key files: format, permission checks, exclusive creation, rotation.

use fleetreg_vault::keyfile::{read_key_file, rotate_key_file, write_new_key_file};
use fleetreg_vault::{KeyMaterialError, Keyring, MasterKey, VaultError};

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn generate_and_write_creates_0600_file_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let key = MasterKey::write_new_key_file(&path).unwrap();
    #[cfg(unix)]
    assert_eq!(mode_of(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim(), key.to_base64().as_str());
    let ring = Keyring::from_file(&path).unwrap();
    assert_eq!(ring.active_id(), key.id());
    assert_eq!(ring.key_ids(), vec![key.id()]);
}

#[test]
fn write_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let first = MasterKey::write_new_key_file(&path).unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = MasterKey::write_new_key_file(&path).unwrap_err();
    assert!(
        matches!(&err, VaultError::KeyFile { reason: KeyMaterialError::AlreadyExists, path: p } if p == &path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let err = write_new_key_file(&path, &[MasterKey::generate()]).unwrap_err();
    assert!(matches!(
        err,
        VaultError::KeyFile {
            reason: KeyMaterialError::AlreadyExists,
            ..
        }
    ));
    let ring = Keyring::new(MasterKey::generate());
    assert!(ring.write_new_key_file(&path).is_err());

    assert_eq!(std::fs::read(&path).unwrap(), before, "key file changed");
    assert_eq!(Keyring::from_file(&path).unwrap().active_id(), first.id());
}

#[cfg(unix)]
#[test]
fn group_or_world_readable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    MasterKey::write_new_key_file(&path).unwrap();

    for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o620] {
        set_mode(&path, mode);
        let err = Keyring::from_file(&path).unwrap_err();
        match &err {
            VaultError::KeyFile {
                path: p,
                reason: KeyMaterialError::InsecurePermissions { mode: m },
            } => {
                assert_eq!(p, &path);
                assert_eq!(*m, mode);
            }
            other => panic!("mode {mode:o}: unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
    }
    for mode in [0o600, 0o400] {
        set_mode(&path, mode);
        Keyring::from_file(&path).unwrap_or_else(|e| panic!("mode {mode:o}: {e}"));
    }
}

#[test]
fn file_format_first_line_active_comments_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let a = MasterKey::generate();
    let b = MasterKey::generate();
    let text = format!(
        "# active\n  {}  \n\n# previous\n{}\n",
        a.to_base64().as_str(),
        b.to_base64().trim_end_matches('=')
    );
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    set_mode(&path, 0o600);
    let ring = Keyring::from_file(&path).unwrap();
    assert_eq!(ring.key_ids(), vec![a.id(), b.id()]);
}

#[test]
fn bad_key_files_name_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    type Case = (&'static str, String, fn(&KeyMaterialError) -> bool);
    let cases: [Case; 4] = [
        ("empty", "# nothing\n\n".to_string(), |r| {
            matches!(r, KeyMaterialError::Empty)
        }),
        (
            "short",
            format!("{}\nAAAA\n", MasterKey::generate().to_base64().as_str()),
            |r| matches!(r, KeyMaterialError::WrongLength { line: 2, found: 3 }),
        ),
        ("garbage", "not*base64\n".to_string(), |r| {
            matches!(r, KeyMaterialError::NotBase64 { line: 1 })
        }),
        (
            "dup",
            {
                let k = MasterKey::generate().to_base64();
                format!("{}\n{}\n", k.as_str(), k.as_str())
            },
            |r| matches!(r, KeyMaterialError::Duplicate { line: 2, .. }),
        ),
    ];
    for (name, text, check) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        #[cfg(unix)]
        set_mode(&path, 0o600);
        let err = Keyring::from_file(&path).unwrap_err();
        match &err {
            VaultError::KeyFile { path: p, reason } => {
                assert_eq!(p, &path);
                assert!(check(reason), "{name}: {reason:?}");
            }
            other => panic!("{name}: unexpected {other:?}"),
        }
        // never echoes the file's content
        for line in text.lines().filter(|l| l.len() > 8 && !l.starts_with('#')) {
            assert!(!err.to_string().contains(line), "{name}: {err}");
        }
    }
    let missing = dir.path().join("missing");
    let err = Keyring::from_file(&missing).unwrap_err();
    assert!(matches!(
        &err,
        VaultError::KeyFile {
            reason: KeyMaterialError::Io(_),
            ..
        }
    ));
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn rotate_key_file_prepends_new_active_key_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let first = MasterKey::write_new_key_file(&path).unwrap();
    let before = Keyring::from_file(&path).unwrap();
    let sealed = before.seal(b"credential", "cluster/1/token/v1");

    let ring = rotate_key_file(&path).unwrap();
    assert_ne!(ring.active_id(), first.id());
    assert_eq!(ring.key_ids()[1..], [first.id()]);
    #[cfg(unix)]
    assert_eq!(mode_of(&path), 0o600);
    let reread = Keyring::from_file(&path).unwrap();
    assert_eq!(reread.key_ids(), ring.key_ids());
    assert_eq!(
        reread.open(&sealed, "cluster/1/token/v1").unwrap().expose(),
        b"credential"
    );
    assert!(reread.needs_rewrap(&sealed));
    let keys = read_key_file(&path).unwrap();
    assert_eq!(keys.len(), 2);
    // no temporary file left behind
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("master.key")]);
}

#[cfg(unix)]
#[test]
fn rotate_refuses_insecure_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    MasterKey::write_new_key_file(&path).unwrap();
    set_mode(&path, 0o644);
    assert!(matches!(
        rotate_key_file(&path),
        Err(VaultError::KeyFile {
            reason: KeyMaterialError::InsecurePermissions { .. },
            ..
        })
    ));
}
