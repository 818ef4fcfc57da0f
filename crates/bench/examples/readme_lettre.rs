//! README.md's compose-and-send program written with lettre, for the side-by-side with
//! postline's (crates/client/examples/readme.rs). Compiled by the suite; the README quotes
//! the lines between the markers, and a test checks that it does so exactly.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README-START
    use lettre::message::{header::ContentType, Attachment, MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{Message, SmtpTransport, Transport};

    let message = Message::builder()
        .from("Alice <alice@example.com>".parse()?)
        .to("Bob <bob@example.org>".parse()?)
        .bcc("audit@example.com".parse()?)
        .subject("Quarterly report")
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(String::from(
                    "Hi Bob, the report is attached.",
                )))
                .singlepart(Attachment::new(String::from("report.pdf")).body(
                    std::fs::read("report.pdf")?,
                    ContentType::parse("application/pdf")?,
                )),
        )?;
    let mailer = SmtpTransport::starttls_relay("smtp.example.com")?
        .credentials(Credentials::new(
            "alice".into(),
            std::env::var("SMTP_PASSWORD")?,
        ))
        .build();
    match mailer.send(&message) {
        Ok(reply) => println!("accepted: {}", reply.code()),
        // One error for the whole message: which recipients were refused is not said.
        Err(e) => eprintln!("not sent: {e}"),
    }
    // README-END
    Ok(())
}
