//! README.md's compose-and-send program (side by side with the same program written with
//! lettre, crates/bench/examples/readme_lettre.rs). Compiled by the suite; the README quotes
//! the lines between the markers, and a test checks that it does so exactly.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README-START
    use postline::{Config, Message, Pool};

    let message = Message::builder()
        .from("Alice <alice@example.com>")
        .to("Bob <bob@example.org>")
        .bcc("audit@example.com")
        .subject("Quarterly report")
        .text("Hi Bob, the report is attached.")
        .attachment_file("report.pdf")
        .build()?;
    let mailer = Pool::new(
        Config::relay("smtp.example.com").credentials("alice", std::env::var("SMTP_PASSWORD")?),
    )?;
    // One result per recipient: delivered, deferred, failed or in doubt, with the reply.
    for d in mailer.send_message(&message)? {
        println!("{}: {} {}", d.address, d.status, d.detail());
    }
    // README-END
    Ok(())
}
