//! The PostgreSQL endpoint: enough of the frontend/backend protocol
//! (version 3.0) for `psql` and tools that use the simple query protocol.
//!
//! - Startup: with a certificate configured (`api.tls_cert`,
//!   `api.tls_key`), an `SSLRequest` is answered `S` and the connection
//!   continues over TLS ([`crate::tls`]), and a connection that does not
//!   ask for TLS is refused (SQLSTATE `28000`): the password must not
//!   travel in clear. Without one, `SSLRequest` is answered `N` (keep the
//!   endpoint on a private address). Then the password is asked in
//!   cleartext (`AuthenticationCleartextPassword`)
//!   and checked against `[api.users]`'s `password_sha256`. A wrong or
//!   missing password ends the connection with SQLSTATE `28P01`.
//! - Queries: each simple `Query` runs through [`QueryEngine::execute`] as
//!   the authenticated user (read-only, the role's limits, recorded). Values
//!   are sent as text, with the PostgreSQL type closest to the Arrow one.
//!   `SET` of a client setting (`application_name`, `extra_float_digits`,
//!   …) is acknowledged and ignored; any other `SET` is refused.
//! - The extended protocol (`Parse`/`Bind`/`Execute`) is answered with an
//!   error (SQLSTATE `0A000`) until the next `Sync`.
//!
//! Written by hand rather than with a protocol crate: the crates at hand
//! pull in dependencies that change the feature set of ones DataFusion is
//! built with, which costs a full rebuild of DataFusion, for the few
//! messages used here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::{Answer, Caller, QueryEngine, QueryError, Surface, Users, guard};

/// Protocol codes of the startup packet.
const PROTOCOL_3: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// Messages longer than this are refused (a query text is far shorter).
const MAX_MESSAGE: usize = 16 << 20;

/// Binds `addr` and serves in a background task; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    engine: QueryEngine,
    users: Arc<Users>,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let engine = engine.clone();
            let users = users.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(socket, &engine, &users, tls.as_ref()).await {
                    tracing::debug!(%peer, error = %e, "postgres connection ended");
                }
            });
        }
    });
    Ok(bound)
}

type IoResult<T> = std::io::Result<T>;

async fn connection(
    mut socket: TcpStream,
    engine: &QueryEngine,
    users: &Users,
    tls: Option<&TlsAcceptor>,
) -> IoResult<()> {
    let _ = socket.set_nodelay(true);
    // The startup packets before TLS are read on the bare socket, so that
    // nothing the handshake needs sits in a buffer.
    loop {
        let (code, body) = read_startup(&mut socket).await?;
        match (code, tls) {
            (SSL_REQUEST, Some(acceptor)) => {
                socket.write_all(b"S").await?;
                let stream = crate::tls::handshake(acceptor, socket).await?;
                return session(stream, engine, users, None).await;
            }
            (SSL_REQUEST | GSSENC_REQUEST, _) => socket.write_all(b"N").await?,
            (CANCEL_REQUEST, _) => return Ok(()),
            (PROTOCOL_3, Some(_)) => {
                // Passwords are sent in clear: with a certificate
                // configured, only TLS connections may send one.
                let mut write = tokio::io::BufWriter::new(socket);
                send_error(
                    &mut write,
                    "FATAL",
                    "28000",
                    "this endpoint requires TLS: connect with sslmode=require (or verify-full)",
                )
                .await?;
                return Ok(());
            }
            (PROTOCOL_3, None) => {
                return session(socket, engine, users, Some(startup_params(&body))).await;
            }
            _ => {
                let mut write = tokio::io::BufWriter::new(socket);
                send_error(&mut write, "FATAL", "0A000", "unsupported protocol version").await?;
                return Ok(());
            }
        }
    }
}

/// One startup packet: its code and body.
async fn read_startup<R: AsyncRead + Unpin>(read: &mut R) -> IoResult<(i32, Vec<u8>)> {
    let len = read.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| (8..=10_000).contains(&l))
        .ok_or_else(|| bad("startup packet length"))?;
    let code = read.read_i32().await?;
    let mut body = vec![0; len - 8];
    read.read_exact(&mut body).await?;
    Ok((code, body))
}

/// A connection after its transport is settled: the startup parameters
/// (`None`: still to be read, after a TLS handshake), authentication, then
/// statements.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    engine: &QueryEngine,
    users: &Users,
    startup: Option<HashMap<String, String>>,
) -> IoResult<()> {
    let (read, write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    let mut write = tokio::io::BufWriter::new(write);
    let params = match startup {
        Some(params) => params,
        None => loop {
            let (code, body) = read_startup(&mut read).await?;
            match code {
                SSL_REQUEST | GSSENC_REQUEST => {
                    write.write_all(b"N").await?;
                    write.flush().await?;
                }
                CANCEL_REQUEST => return Ok(()),
                PROTOCOL_3 => break startup_params(&body),
                _ => {
                    send_error(&mut write, "FATAL", "0A000", "unsupported protocol version")
                        .await?;
                    return Ok(());
                }
            }
        },
    };
    let name = params.get("user").cloned().unwrap_or_default();
    // AuthenticationCleartextPassword.
    message(&mut write, b'R', &3i32.to_be_bytes()).await?;
    write.flush().await?;
    let (kind, body) = read_message(&mut read).await?;
    let password = (kind == b'p').then(|| cstr(&body)).flatten();
    let Some(caller) = password.and_then(|p| users.by_password(&name, &p)).cloned() else {
        super::audit::report_unauthenticated(Surface::Postgres, Some(&name));
        send_error(
            &mut write,
            "FATAL",
            "28P01",
            &format!("password authentication failed for user \"{name}\""),
        )
        .await?;
        return Ok(());
    };
    message(&mut write, b'R', &0i32.to_be_bytes()).await?;
    for (k, v) in [
        ("server_version", "16.0 (custos)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("default_transaction_read_only", "on"),
        (
            "application_name",
            params.get("application_name").map_or("", |s| s),
        ),
    ] {
        let mut b = Vec::new();
        put_cstr(&mut b, k);
        put_cstr(&mut b, v);
        message(&mut write, b'S', &b).await?;
    }
    let mut key = Vec::with_capacity(8);
    key.extend_from_slice(&(std::process::id() as i32).to_be_bytes());
    key.extend_from_slice(&rand::random::<i32>().to_be_bytes());
    message(&mut write, b'K', &key).await?;
    ready(&mut write).await?;
    let mut failed_extended = false;
    loop {
        let (kind, body) = read_message(&mut read).await?;
        match kind {
            b'Q' => {
                let sql = cstr(&body).unwrap_or_default();
                simple_query(&mut write, engine, &caller, &sql).await?;
                ready(&mut write).await?;
            }
            b'X' => return Ok(()),
            b'S' => {
                failed_extended = false;
                ready(&mut write).await?;
            }
            b'H' => write.flush().await?,
            b'P' | b'B' | b'D' | b'E' | b'C' | b'F' => {
                if !failed_extended {
                    failed_extended = true;
                    send_error(
                        &mut write,
                        "ERROR",
                        "0A000",
                        "the extended query protocol is not supported: use simple queries \
                         (psql does; for JDBC set preferQueryMode=simple)",
                    )
                    .await?;
                }
            }
            other => {
                send_error(
                    &mut write,
                    "FATAL",
                    "08P01",
                    &format!("unexpected message `{}`", other as char),
                )
                .await?;
                return Ok(());
            }
        }
    }
}

async fn simple_query<W: AsyncWrite + Unpin>(
    write: &mut W,
    engine: &QueryEngine,
    caller: &Caller,
    sql: &str,
) -> IoResult<()> {
    let text = sql.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return message(write, b'I', &[]).await;
    }
    if guard::is_client_set(text) {
        let mut b = Vec::new();
        put_cstr(&mut b, "SET");
        return message(write, b'C', &b).await;
    }
    match engine.execute(caller, Surface::Postgres, text).await {
        Ok(answer) => send_answer(write, &answer).await,
        Err(e) => send_error(write, "ERROR", sqlstate(&e), &e.to_string()).await,
    }
}

/// The SQLSTATE of a failed statement.
fn sqlstate(e: &QueryError) -> &'static str {
    match e {
        QueryError::Refused(_) => "25006",   // read_only_sql_transaction
        QueryError::Forbidden(_) => "42501", // insufficient_privilege
        QueryError::TimeLimit(_) => "57014", // query_canceled
        QueryError::MemoryLimit(_) => "53200",
        QueryError::TooManyRows(_) => "54000",
        e if e.is_bad_statement() => "42601",
        _ => "XX000",
    }
}

async fn send_answer<W: AsyncWrite + Unpin>(write: &mut W, answer: &Answer) -> IoResult<()> {
    message(write, b'T', &row_description(&answer.schema)).await?;
    let options = FormatOptions::default()
        .with_null("")
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.6f%:z"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.6f"));
    let mut rows = 0u64;
    for batch in &answer.batches {
        let bytes = data_rows(batch, &options).map_err(|e| std::io::Error::other(e.to_string()))?;
        write.write_all(&bytes).await?;
        rows += batch.num_rows() as u64;
    }
    let mut b = Vec::new();
    put_cstr(&mut b, &format!("SELECT {rows}"));
    message(write, b'C', &b).await
}

/// The `DataRow` messages of a batch, values as text.
fn data_rows(
    batch: &arrow::record_batch::RecordBatch,
    options: &FormatOptions<'_>,
) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    let mut value = String::new();
    for row in 0..batch.num_rows() {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&(formatters.len() as i16).to_be_bytes());
        for (f, column) in formatters.iter().zip(batch.columns()) {
            if column.is_null(row) {
                b.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            value.clear();
            use std::fmt::Write as _;
            let _ = write!(value, "{}", f.value(row));
            if column.data_type() == &DataType::Boolean {
                let t = if value == "true" { "t" } else { "f" };
                value.clear();
                value.push_str(t);
            }
            b.extend_from_slice(&(value.len() as i32).to_be_bytes());
            b.extend_from_slice(value.as_bytes());
        }
        out.push(b'D');
        out.extend_from_slice(&((b.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&b);
    }
    Ok(out)
}

fn row_description(schema: &SchemaRef) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(schema.fields().len() as i16).to_be_bytes());
    for field in schema.fields() {
        let (oid, size) = pg_type(field.data_type());
        put_cstr(&mut b, field.name());
        b.extend_from_slice(&0i32.to_be_bytes()); // table oid
        b.extend_from_slice(&0i16.to_be_bytes()); // column number
        b.extend_from_slice(&oid.to_be_bytes());
        b.extend_from_slice(&size.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        b.extend_from_slice(&0i16.to_be_bytes()); // text format
    }
    b
}

/// The PostgreSQL type (oid, size) values of an Arrow type are sent as.
fn pg_type(t: &DataType) -> (i32, i16) {
    match t {
        DataType::Boolean => (16, 1),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => (21, 2),
        DataType::Int32 | DataType::UInt16 => (23, 4),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => (20, 8),
        DataType::Float16 | DataType::Float32 => (700, 4),
        DataType::Float64 => (701, 8),
        DataType::Decimal128(..) | DataType::Decimal256(..) => (1700, -1),
        DataType::Timestamp(_, Some(_)) => (1184, 8),
        DataType::Timestamp(_, None) => (1114, 8),
        DataType::Date32 | DataType::Date64 => (1082, 4),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => (17, -1),
        _ => (25, -1),
    }
}

fn startup_params(body: &[u8]) -> HashMap<String, String> {
    let mut parts = body
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let mut params = HashMap::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if k.is_empty() {
            break;
        }
        params.insert(k, v);
    }
    params
}

async fn read_message<R: AsyncRead + Unpin>(read: &mut R) -> IoResult<(u8, Vec<u8>)> {
    let kind = read.read_u8().await?;
    let len = read.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| (4..=MAX_MESSAGE).contains(&l))
        .ok_or_else(|| bad("message length"))?;
    let mut body = vec![0; len - 4];
    read.read_exact(&mut body).await?;
    Ok((kind, body))
}

async fn message<W: AsyncWrite + Unpin>(write: &mut W, kind: u8, body: &[u8]) -> IoResult<()> {
    let mut b = Vec::with_capacity(body.len() + 5);
    b.push(kind);
    b.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    b.extend_from_slice(body);
    write.write_all(&b).await
}

async fn ready<W: AsyncWrite + Unpin>(write: &mut W) -> IoResult<()> {
    message(write, b'Z', b"I").await?;
    write.flush().await
}

async fn send_error<W: AsyncWrite + Unpin>(
    write: &mut W,
    severity: &str,
    code: &str,
    text: &str,
) -> IoResult<()> {
    let mut b = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        b.push(field);
        put_cstr(&mut b, value);
    }
    b.push(0);
    message(write, b'E', &b).await?;
    write.flush().await
}

fn put_cstr(b: &mut Vec<u8>, s: &str) {
    b.extend(s.bytes().filter(|&c| c != 0));
    b.push(0);
}

fn cstr(body: &[u8]) -> Option<String> {
    let end = body.iter().position(|&b| b == 0)?;
    String::from_utf8(body[..end].to_vec()).ok()
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad {what}"))
}
