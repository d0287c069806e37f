//! Seeds a wxauth data directory with many users and live sessions for the benchmark,
//! through the storage layer rather than a million HTTP logins, and writes tokens for a
//! sample of those sessions, signed with the directory's own keys, one a line.
//!
//! Usage: `bench_seed --data-dir DIR --users N --appid APPID --tokens FILE [--sample K]
//! [--profiles [--samples FILE]]`
//!
//! With `--profiles` every user also gets a nickname, a phone number and a unionid (see
//! `seed::seed`), and `--samples FILE` receives values the console's user search
//! finds, one `kind=value` a line: `id`, `openid`, `unionid`, `phone` (all of the user
//! in the middle of those seeded), and `nickname` and `nickname_zh`: a nickname's first
//! word in Latin letters and one in Chinese, each shared by about one user in 32.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wxauth::datadir::{DATABASE_FILE, KEYS_FILE, ensure_private_dir};
use wxauth::db::{migrate, needed_keys, open_connection};
use wxauth::keys::key_file::KeyFile;
use wxauth_bench::seed;

struct Args {
    data_dir: PathBuf,
    users: u64,
    appid: String,
    tokens: PathBuf,
    sample: usize,
    profiles: bool,
    samples: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut data_dir = None;
    let mut users = None;
    let mut appid = None;
    let mut tokens = None;
    let mut sample = 1000;
    let mut profiles = false;
    let mut samples = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--users" => users = Some(value()?.parse().map_err(|_| "--users: not a number")?),
            "--appid" => appid = Some(value()?),
            "--tokens" => tokens = Some(PathBuf::from(value()?)),
            "--sample" => sample = value()?.parse().map_err(|_| "--sample: not a number")?,
            "--profiles" => profiles = true,
            "--samples" => samples = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if samples.is_some() && !profiles {
        return Err("--samples needs --profiles".into());
    }
    Ok(Args {
        data_dir: data_dir.ok_or("--data-dir is required")?,
        users: users.ok_or("--users is required")?,
        appid: appid.ok_or("--appid is required")?,
        tokens: tokens.ok_or("--tokens is required")?,
        sample,
        profiles,
        samples,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "bench_seed: {e}\nusage: bench_seed --data-dir DIR --users N --appid APPID \
                 --tokens FILE [--sample K] [--profiles [--samples FILE]]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_seed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    ensure_private_dir(&args.data_dir)?;
    let keys_path = args.data_dir.join(KEYS_FILE);
    let keys = match KeyFile::load_if_present(&keys_path)? {
        Some(keys) => keys,
        None => {
            let keys = KeyFile::generate(now);
            keys.save(&keys_path)?;
            keys
        }
    };
    let keyring = keys.keyring()?;

    let db_path = args.data_dir.join(DATABASE_FILE);
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&db_path)?;
    }
    let mut conn = open_connection(&db_path, false)?;
    migrate(&mut conn)?;
    // The server refuses a populated database that does not name its key file.
    needed_keys::record(&conn, &keys.prints(), now)?;
    // A fixture that can be rebuilt needs no fsync per batch, and a large cache keeps
    // the random index inserts in memory.
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -512 * 1024)?;
    let seed_value = u64::from_le_bytes(wxauth::keys::random::bytes());
    let seeded = seed::seed(
        &mut conn,
        &args.appid,
        args.users,
        args.sample,
        now,
        seed_value,
        args.profiles,
    )?;
    if let Some(path) = &args.samples {
        write_samples(&conn, seeded.users, path)?;
    }
    // Leave a checkpointed file behind so the server's start reads no leftover
    // write-ahead log.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.close().map_err(|(_, e)| e)?;
    // And on disk before the measurements start. Written without a sync, the file's
    // pages stay dirty in the page cache until the kernel writes them back on its own,
    // about 30 seconds later: a few hundred megabytes written back while a scenario
    // runs, which stalled its requests for tens of milliseconds.
    std::fs::File::open(&db_path)?.sync_all()?;
    std::fs::File::open(&args.data_dir)?.sync_all()?;

    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.tokens)?);
    for secret in &seeded.sample {
        writeln!(out, "{}", keyring.sign(secret))?;
    }
    out.flush()?;
    eprintln!(
        "bench_seed: {} users{} and sessions in {:.1}s; {} tokens written",
        seeded.users,
        if args.profiles { " with profiles" } else { "" },
        started.elapsed().as_secs_f64(),
        seeded.sample.len()
    );
    Ok(())
}

/// Writes what the console's search should find of the user in the middle of the `users`
/// just seeded (the last of them has the highest id), and the first words of the
/// nicknames of the first users from there on whose nicknames begin in Latin letters
/// and in Chinese.
fn write_samples(
    conn: &rusqlite::Connection,
    users: u64,
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let middle: i64 = conn.query_row(
        "SELECT max(id) - ?1 FROM users",
        [(users / 2) as i64],
        |r| r.get(0),
    )?;
    let (id, phone, openid, unionid): (String, String, String, String) = conn.query_row(
        "SELECT u.public_id, u.phone, i.openid, i.unionid \
         FROM users u JOIN identities i ON i.user_id = u.id WHERE u.id = ?1",
        [middle],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    // The word of the first nickname from the middle on that matches `pattern`.
    let word = |pattern: &str| -> rusqlite::Result<String> {
        let nickname: String = conn.query_row(
            "SELECT nickname FROM users WHERE id >= ?1 AND nickname GLOB ?2 ORDER BY id LIMIT 1",
            rusqlite::params![middle, pattern],
            |r| r.get(0),
        )?;
        Ok(nickname
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_owned())
    };
    let (latin, chinese) = (word("[A-Za-z]*")?, word("[^A-Za-z]*")?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id={id}")?;
    writeln!(out, "openid={openid}")?;
    writeln!(out, "unionid={unionid}")?;
    writeln!(out, "phone={phone}")?;
    writeln!(out, "nickname={latin}")?;
    writeln!(out, "nickname_zh={chinese}")?;
    out.flush()?;
    Ok(())
}
