//! Seeds a wxauth data directory with many users and live sessions for the benchmark,
//! through the storage layer rather than a million HTTP logins, and writes tokens for a
//! sample of those sessions, signed with the directory's own keys, one a line.
//!
//! Usage: `bench_seed --data-dir DIR --users N --appid APPID --tokens FILE [--sample K]`

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
}

fn parse_args() -> Result<Args, String> {
    let mut data_dir = None;
    let mut users = None;
    let mut appid = None;
    let mut tokens = None;
    let mut sample = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--users" => users = Some(value()?.parse().map_err(|_| "--users: not a number")?),
            "--appid" => appid = Some(value()?),
            "--tokens" => tokens = Some(PathBuf::from(value()?)),
            "--sample" => sample = value()?.parse().map_err(|_| "--sample: not a number")?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        data_dir: data_dir.ok_or("--data-dir is required")?,
        users: users.ok_or("--users is required")?,
        appid: appid.ok_or("--appid is required")?,
        tokens: tokens.ok_or("--tokens is required")?,
        sample,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "bench_seed: {e}\nusage: bench_seed --data-dir DIR --users N --appid APPID \
                 --tokens FILE [--sample K]"
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
    )?;
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
        "bench_seed: {} users and sessions in {:.1}s; {} tokens written",
        seeded.users,
        started.elapsed().as_secs_f64(),
        seeded.sample.len()
    );
    Ok(())
}
