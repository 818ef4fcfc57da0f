//! A delaying TCP relay on loopback: every chunk read from one side is written to the other
//! side `delay` after it was read, in order, in both directions. One-way delay `d` makes a
//! round trip of `2d` for the client behind it (this kernel has no netem).

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The relay exits by itself after this long, in case whoever started it forgot it.
const LIFETIME: Duration = Duration::from_secs(3600);

pub fn run(listen: u16, to: u16, delay: Duration) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", listen))
            .await
            .map_err(|e| format!("bind 127.0.0.1:{listen}: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let mut out = std::io::stdout();
        writeln!(out, "READY {port}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        let accept = async {
            loop {
                let (client, _) = listener.accept().await.map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    if let Err(e) = connection(client, to, delay).await {
                        eprintln!("relay: {e}");
                    }
                });
            }
        };
        match tokio::time::timeout(LIFETIME, accept).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    })
}

async fn connection(client: TcpStream, to: u16, delay: Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", to)).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pipe(cr, sw, delay));
    let down = tokio::spawn(pipe(sr, cw, delay));
    let _ = up.await;
    let _ = down.await;
    Ok(())
}

/// Reads chunks as they come, stamps them, and writes each one `delay` after its stamp. EOF
/// travels the same way (as a shutdown of the write side).
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or_default();
            // An empty chunk is the EOF marker.
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() || n == 0 {
                break;
            }
        }
    });
    while let Some((at, chunk)) = rx.recv().await {
        tokio::time::sleep_until(at + delay).await;
        if chunk.is_empty() || to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}
