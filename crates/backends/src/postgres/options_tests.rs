//! Unit tests of `options.rs`: URL parsing and the typed options' checks.

use super::*;

fn parsed(url: &str) -> Result<PostgresOptions> {
    parse(&Url::parse(url).unwrap())
}

#[test]
fn urls_parse_into_options() {
    let o = parsed("postgresql://app:s%40cret@db:6543/agents?schema=team_a&pool_size=4&connect_timeout_ms=500&statement_timeout_ms=2000&readable_columns=false").unwrap();
    assert_eq!(o.host, "db");
    assert_eq!(o.port, 6543);
    assert_eq!(o.user, "app");
    assert_eq!(o.password.as_deref(), Some("s@cret"));
    assert_eq!(o.dbname, "agents");
    assert_eq!(o.schema, "team_a");
    assert_eq!(o.pool_size, 4);
    assert_eq!(o.connect_timeout, Duration::from_millis(500));
    assert_eq!(o.statement_timeout, Some(Duration::from_secs(2)));
    assert!(!o.readable_columns);
    assert!(!format!("{o:?}").contains("s@cret"));
    let d = parsed("postgres://h/db").unwrap();
    assert_eq!(d, PostgresOptions::new("h", "db"));
}

#[test]
fn bad_urls_name_the_problem() {
    use stowage_core::ErrorKind;
    for (url, want) in [
        ("postgres://h/db?schema=Bad", "schema=Bad"),
        ("postgres://h/db?schema=pg_mine", "schema=pg_mine"),
        ("postgres://h/db?pool_size=0", "pool_size=0"),
        ("postgres://h/db?connect_timeout_ms=0", "connect_timeout_ms"),
        ("postgres://h/db?nope=1", "unknown option nope=1"),
        ("postgres://h/", "one database"),
        ("postgres://u:pw@h/?x=1", "***"),
        // The last value used to win: another schema's store opened.
        (
            "postgres://u:pw@h/db?schema=tenant_a&schema=tenant_b",
            "`schema` is given twice",
        ),
        (
            "postgres://h/db?pool_size=4&sslmode=disable&pool_size=8",
            "`pool_size` is given twice",
        ),
    ] {
        let e = parsed(url).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
        assert!(e.message().contains(want), "{url}: {e}");
        assert!(!e.message().contains(":pw@"), "{e}");
    }
    for (url, want) in [
        ("postgres://h/db?sslmode=allow", "sslmode=allow"),
        ("postgres://h/db?sslmode=bogus", "verify-full"),
        ("postgres://h/db?sslmode=verify-full", "sslrootcert"),
        ("postgres://h/db?sslmode=verify-ca", "sslrootcert"),
        ("postgres://h/db?sslrootcert=system", "sslrootcert=system"),
    ] {
        let e = parsed(url).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
        assert!(e.message().contains(want), "{url}: {e}");
    }
}

#[test]
fn ssl_modes_parse_as_libpq_names_them() {
    assert_eq!(parsed("postgres://h/db").unwrap().ssl_mode, SslMode::Prefer);
    for mode in ["disable", "prefer", "require"] {
        let o = parsed(&format!("postgres://h/db?sslmode={mode}")).unwrap();
        assert_eq!(o.ssl_mode.as_str(), mode);
        assert_eq!(o.effective_ssl_mode(), o.ssl_mode);
    }
    let o = parsed("postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
    assert_eq!(o.ssl_mode, SslMode::VerifyFull);
    assert_eq!(o.ssl_root_cert, Some(PathBuf::from("/ca.pem")));
    let o = parsed("postgres://h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
    assert_eq!(o.effective_ssl_mode(), SslMode::VerifyCa, "libpq's rule");
    let mut typed = PostgresOptions::new("h", "db");
    typed.ssl_mode = SslMode::VerifyCa;
    let e = typed.validate().unwrap_err();
    assert!(e.message().contains("ssl_root_cert"), "{e}");
}

#[test]
fn typed_timeouts_are_checked_as_the_url_ones() {
    use stowage_core::ErrorKind;
    // Under 1 ms, a connect timeout cannot connect; a statement
    // timeout would be sent as 0 ms, PostgreSQL's "no timeout".
    for (field, set) in [
        (
            "connect_timeout",
            (|o, d| o.connect_timeout = d) as fn(&mut PostgresOptions, Duration),
        ),
        ("statement_timeout", |o, d| o.statement_timeout = Some(d)),
    ] {
        for d in [Duration::from_micros(500), Duration::from_secs(3601)] {
            let mut o = PostgresOptions::new("h", "db");
            set(&mut o, d);
            let e = o.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{field} {d:?}");
            assert!(e.message().contains(field), "{e}");
        }
    }
    let mut o = PostgresOptions::new("h", "db");
    o.connect_timeout = Duration::ZERO;
    assert!(o.validate().is_err());
    // 0 is documented: no statement timeout, as in the URL.
    o.connect_timeout = Duration::from_millis(1);
    o.statement_timeout = Some(Duration::ZERO);
    assert!(o.validate().is_ok());
    o.statement_timeout = Some(Duration::from_millis(1));
    assert!(o.validate().is_ok());
}

#[test]
fn a_nul_byte_is_refused_naming_the_field() {
    use stowage_core::ErrorKind;
    for (url, field) in [
        ("postgres://u@h/d%00b", "dbname"),
        ("postgres://u%00x@h/db", "user"),
        ("postgres://u:p%00w@h/db", "password"),
    ] {
        let e = parsed(url).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
        assert!(e.message().contains(field), "{url}: {e}");
        assert!(!e.message().contains("p%00w"), "the password is shown: {e}");
    }
    type Set = fn(&mut PostgresOptions);
    let typed: [(&str, Set); 4] = [
        ("host", |o| o.host = "h\0".into()),
        ("user", |o| o.user = "u\0".into()),
        ("password", |o| o.password = Some("secret\0".into())),
        ("dbname", |o| o.dbname = "d\0b".into()),
    ];
    for (field, set) in typed {
        let mut o = PostgresOptions::new("h", "db");
        set(&mut o);
        let e = o.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{field}");
        assert!(e.message().contains(&format!("::{field} ")), "{e}");
        assert!(
            !e.message().contains("secret"),
            "the password is shown: {e}"
        );
    }
}

/// An empty user is refused before connecting: the server's refusal of
/// the login would be `Unavailable`, "retry", for a value that never works.
#[test]
fn an_empty_typed_user_is_refused() {
    let mut o = PostgresOptions::new("h", "db");
    o.user = String::new();
    let e = o.validate().unwrap_err();
    assert_eq!(e.kind(), stowage_core::ErrorKind::InvalidInput);
    assert!(e.message().contains("PostgresOptions::user"), "{e}");
    // The URL cannot express it: no user name means the default.
    assert_eq!(parsed("postgres://@h/db").unwrap().user, "postgres");
}
