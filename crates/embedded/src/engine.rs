//! The driver's policy without I/O or waiting: what follows each reply, when message data
//! goes into the output buffer, which AUTH mechanism, what a failure means for the message.
//! The loop in [`Client`](crate::Client) asks [`Engine::poll`] what to do (write, read,
//! hand the stream to TLS, or nothing: the call is done), does it by the deadline given, and
//! reports back; the blocking twin runs that same loop. The policy is written once, in plain
//! functions: no state machine generated from `async` code carries it, which keeps the code
//! and the stack of one send small on a device.

use postline_proto::command::{Address, Domain, Envelope, ReversePath};
use postline_proto::negotiate::{negotiate, BodyType, MessageOptions};
use postline_proto::reply::{unprompted, Reply as ProtoReply, Unprompted};
use postline_proto::sasl::{Mechanism, MAX_ROUNDS};
use postline_proto::session::{Event, Phase, SessionError, TxOutcome, UseError};
use postline_proto::{BufferFull, Extension, FixedBuf, Outbox, Session, SessionConfig};

use crate::client::{Config, Secret, Status};
use crate::error::Error;
use crate::mail::Parts;
use crate::reply::Reply;

/// BDAT chunks written before their replies are read: 8 replies (about 30 bytes each) fit
/// any socket's buffer and the input buffer, so neither side waits on the other, and 8 chunks
/// keep the connection busy while the first replies travel.
#[cfg(feature = "chunking")]
const BDAT_WINDOW: u32 = 8;

/// The longest `BDAT n` line (a 20-digit size and CRLF).
#[cfg(feature = "chunking")]
const BDAT_LINE: usize = 27;

/// What the loop does next for the engine.
pub(crate) enum Want {
    /// Write `Engine::transmit` (all of it, then flush the stream) by `deadline`.
    Write { deadline: u64, phase: Phase },
    /// Read into `Engine::space` by `deadline`.
    Read { deadline: u64, phase: Phase },
    /// Set up TLS on the stream by `deadline`, then call [`Engine::handshaken`].
    #[cfg(feature = "tls")]
    Handshake { deadline: u64 },
    /// The call is done; its results are in the [`Job`].
    Done,
}

/// Where the engine is in the caller's current call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Made, not yet connected: only [`Engine::start_connect`] may begin.
    Unconnected,
    /// No call under way.
    Idle,
    /// Connecting ended in a refusal the session outlives (the greeting, EHLO, AUTH refused,
    /// or no usable AUTH): only QUIT may follow. A message would go without the AUTH the
    /// config asks for.
    Refused,
    /// A call failed and left the session out of step (no reply by the deadline, a broken
    /// stream, a reply out of place, an exchange left half done), or was abandoned midway:
    /// every later call fails with [`Error::Broken`], which is transient (RFC 5321 4.5.3.2:
    /// the client closes and tries again later), never a mistake of the caller's.
    Broken,
    /// TLS before anything else (implicit), or after the 220 to STARTTLS.
    #[cfg(feature = "tls")]
    Handshake { implicit: bool },
    /// Until the greeting and EHLO (or HELO) are done.
    Hello,
    /// STARTTLS said, until its answer.
    #[cfg(feature = "tls")]
    StartTls,
    /// AUTH said, until it is done.
    Auth,
    /// Taking the replies an earlier, refused message still has due.
    Drain,
    /// MAIL and RCPT (and DATA when pipelining) said, until the go-ahead for data.
    Envelope,
    /// Message data going into the output buffer; `end`: then the end of data.
    Data { end: bool },
    /// The end of data said, until its answer.
    End,
    /// QUIT said, until the server closes or answers.
    Quit,
}

/// What a call is, for [`Engine::begin`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Connect,
    Message,
    Quit,
}

/// What one call works on: where recipients' codes go, the message's envelope and body, and
/// what became of the message.
pub(crate) struct Job<'j> {
    pub(crate) codes: &'j mut [u16],
    pub(crate) envelope: Option<Outgoing<'j>>,
    /// The body to send after the envelope (`None`: stop at the go-ahead for data).
    pub(crate) body: Option<Body<'j>>,
    pub(crate) status: Option<Status>,
}

impl<'j> Job<'j> {
    /// A call that sends no message (connect, QUIT).
    pub(crate) fn none() -> Self {
        Job {
            codes: &mut [],
            envelope: None,
            body: None,
            status: None,
        }
    }

    /// A whole message: `body` (any line endings) after its envelope.
    pub(crate) fn send(
        from: Address<&'j str>,
        to: &'j [Address<&'j str>],
        body: &'j [u8],
        codes: &'j mut [u16],
    ) -> Self {
        Job {
            codes,
            envelope: Some(Outgoing {
                from,
                to,
                size: Some(body.len()),
                body: body_type(body),
            }),
            body: Some(Body::Bytes(body)),
            status: None,
        }
    }

    /// What became of the message the job sent: the reply that decided it. A message's job
    /// ends only on such a reply; without one the message is in doubt.
    pub(crate) fn status<E>(&self) -> Result<Status, Error<E>> {
        self.status.ok_or(Error::InDoubt(Phase::DataEnd))
    }
}

/// What a body holds, for `BODY=` (and a composed mail's Content-Transfer-Encoding): 7-bit
/// when every octet is ASCII. Looked at a byte at a time: core's word-at-a-time
/// `<[u8]>::is_ascii` took 74 B of a Cortex-M4 image for a scan or two per message.
pub(crate) fn body_type(body: &[u8]) -> BodyType {
    if body.iter().all(u8::is_ascii) {
        BodyType::SevenBit
    } else {
        BodyType::EightBit
    }
}

/// The envelope of the message a job sends: who from, to whom, its size when known, and
/// what its body holds (for `BODY=`).
#[derive(Clone, Copy)]
pub(crate) struct Outgoing<'j> {
    pub(crate) from: Address<&'j str>,
    pub(crate) to: &'j [Address<&'j str>],
    pub(crate) size: Option<usize>,
    pub(crate) body: BodyType,
}

/// Message data on its way into the output buffer.
pub(crate) enum Body<'j> {
    Bytes(&'j [u8]),
    /// A message composed while it is sent.
    Mail(Parts<'j>),
}

impl Body<'_> {
    /// The bytes not yet taken; empty when the body is all in.
    fn current(&mut self) -> &[u8] {
        match self {
            Body::Bytes(b) => b,
            Body::Mail(parts) => parts.current(),
        }
    }

    fn consume(&mut self, n: usize) {
        match self {
            Body::Bytes(b) => *b = b.get(n..).unwrap_or(&[]),
            Body::Mail(parts) => parts.consume(n),
        }
    }
}

/// What a reply meant, kept past the input it was read from.
enum Step {
    Ready,
    /// The 220 to STARTTLS: the handshake is next.
    #[cfg(feature = "tls")]
    StartTls,
    /// STARTTLS refused.
    #[cfg(feature = "tls")]
    StartTlsRefused,
    Authenticated,
    Rcpt {
        index: u32,
        code: u16,
    },
    SendData,
    Done(Status),
    Closed,
    Other,
    /// No whole reply in the input yet: read more.
    Incomplete,
}

/// The core's session, the caller's buffers and the call under way.
pub(crate) struct Engine<'b> {
    /// The core's session, announcing the name the config borrows (not a copy of it), with
    /// room for one transaction: this driver sends a message at a time.
    pub(crate) session: Session<&'b str, 1>,
    pub(crate) out: Outbox<FixedBuf<'b>>,
    input: &'b mut [u8],
    filled: usize,
    pub(crate) config: Config<'b>,
    /// Messages composed on this client, for unique Message-IDs.
    composed: u32,
    stage: Stage,
    /// Replies the input may hold now: those due for the commands on the wire (set when the
    /// output is all written, one less for each reply taken). A reply beyond them came
    /// before its command was sent, and taking it for that command's answer would shift
    /// every later reply by one: the session ends instead (the core's rule).
    budget: u32,
    /// The input began, while no reply was due, with bytes that may start a 421: the reply
    /// they begin is looked at once three bytes are in, whatever was sent meanwhile.
    unsure: bool,
    /// Lines of the reply under way dropped to make room ([`Engine::trim`]).
    dropped: usize,
    /// The line arriving was cut by [`Engine::trim`]: what comes is dropped up to its LF.
    skipping: bool,
    /// When the current wait ends: set when it starts, cleared when a reply is complete or
    /// the output is all written (a server trickling a reply does not move it).
    deadline: Option<u64>,
    /// The server closed the connection when it was expected to (after QUIT).
    closed: bool,
    /// TLS asked for, and how; nothing is sent in clear text while it is not in place.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Mode>,
    /// The TLS handshake is done.
    #[cfg(feature = "tls")]
    secured: bool,
    /// A TLS step failed: the stream is given up.
    pub(crate) unusable: bool,
    /// Challenges answered in this AUTH exchange.
    auth_rounds: u32,
    /// A streamed message's BDAT chunk was refused during [`Client::data`](crate::Client::data):
    /// its status, for [`Client::end`](crate::Client::end); the rest of its data is dropped.
    #[cfg(feature = "chunking")]
    refused: Option<Status>,
    /// The reply that decided the last call (a refusal, a message's final reply): the one
    /// copy of its text, which errors and statuses refer to by code.
    pub(crate) last_reply: Option<Reply>,
}

impl<'b> Engine<'b> {
    /// An engine for `config` over the caller's buffers, waiting for the greeting.
    pub(crate) fn new<E>(
        config: Config<'b>,
        out: &'b mut [u8],
        input: &'b mut [u8],
    ) -> Result<Self, Error<E>> {
        let session = session_for(&config, false)?;
        Ok(Engine {
            budget: session.replies_due(),
            unsure: false,
            dropped: 0,
            skipping: false,
            session,
            out: Outbox::new(FixedBuf::new(out)),
            input,
            filled: 0,
            config,
            composed: config.composed,
            stage: Stage::Unconnected,
            deadline: None,
            closed: false,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            secured: false,
            unusable: false,
            auth_rounds: 0,
            #[cfg(feature = "chunking")]
            refused: None,
            last_reply: None,
        })
    }

    /// TLS asked for, in `mode`, once and before connecting (after, the session is under way
    /// in clear text). With implicit TLS the session knows from the start that the connection is
    /// encrypted.
    #[cfg(feature = "tls")]
    pub(crate) fn use_tls<E>(&mut self, tls: &crate::tls::Tls<'_>) -> Result<(), Error<E>> {
        // Once: a second call would leave the session of the first (implicit TLS, "secure"
        // from the start) under the mode of the second (STARTTLS never said).
        if self.stage != Stage::Unconnected || self.tls.is_some() {
            return Err(Error::Use(UseError::NotReady));
        }
        // Record buffers too small for embedded-tls to work with (it asserts on a tiny one).
        let needed = crate::tls::MIN_RECORD_BUFFER;
        if tls.read_record.len() < needed || tls.write_record.len() < needed {
            return Err(Error::Use(UseError::BufferFull(BufferFull { needed })));
        }
        if tls.mode == crate::tls::Mode::Implicit {
            self.session = session_for(&self.config, true)?;
        }
        self.tls = Some(tls.mode);
        Ok(())
    }

    /// A number no earlier message composed on this client had.
    pub(crate) fn next_message_number(&mut self) -> u32 {
        self.composed = self.composed.wrapping_add(1);
        self.composed
    }

    /// What is released for the wire.
    pub(crate) fn transmit(&self) -> &[u8] {
        self.out.transmit()
    }

    /// Where the next read goes.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        &mut self.input[self.filled..]
    }

    /// The deadline of a wait in `phase` starting at `now`: the RFC 5321 timer, or the
    /// caller's cap when shorter.
    pub(crate) fn deadline_from(&self, now: u64, phase: Phase) -> u64 {
        let rfc = phase.default_timeout_secs() * 1000;
        let ms = self.config.timeout_ms.map_or(rfc, |cap| cap.min(rfc));
        now.saturating_add(ms)
    }

    /// The current wait's deadline, started now if none is running.
    fn deadline(&mut self, now: u64, phase: Phase) -> u64 {
        match self.deadline {
            Some(d) => d,
            None => {
                let d = self.deadline_from(now, phase);
                self.deadline = Some(d);
                d
            }
        }
    }

    /// Whether a call may begin: `connect` once on a new engine, every other call after it.
    /// A call found still under way was abandoned midway (its future dropped): the session
    /// is out of step from then on.
    fn begin<E>(&mut self, call: Call) -> Result<(), Error<E>> {
        self.last_reply = None;
        match (self.stage, call) {
            (Stage::Unconnected, Call::Connect)
            | (Stage::Idle, Call::Message | Call::Quit)
            | (Stage::Refused, Call::Quit) => Ok(()),
            (Stage::Unconnected | Stage::Idle | Stage::Refused, _) => {
                Err(Error::Use(UseError::NotReady))
            }
            _ => {
                self.break_off();
                Err(Error::Broken)
            }
        }
    }

    /// The session is out of step: nothing more is written, and what waited to be (an AUTH
    /// line, say) is zeroed now, not when the client is dropped (a device may keep it).
    fn break_off(&mut self) {
        self.stage = Stage::Broken;
        self.out.discard();
    }

    /// Starts [`Client::connect`](crate::Client::connect): TLS first when implicit, then the
    /// greeting and EHLO.
    pub(crate) fn start_connect<E>(&mut self) -> Result<(), Error<E>> {
        self.begin(Call::Connect)?;
        self.stage = Stage::Hello;
        #[cfg(feature = "tls")]
        if self.tls == Some(crate::tls::Mode::Implicit) && !self.secured {
            self.stage = Stage::Handshake { implicit: true };
        }
        Ok(())
    }

    /// Starts a message: the job's envelope goes out once no earlier message has replies due.
    pub(crate) fn start_message<E>(&mut self, job: &mut Job<'_>) -> Result<(), Error<E>> {
        job.codes.iter_mut().for_each(|c| *c = 0);
        self.begin(Call::Message)?;
        #[cfg(feature = "chunking")]
        {
            self.refused = None;
        }
        // TLS was asked for and is not in place (connect failed, or was not called): no
        // message goes in clear text.
        #[cfg(feature = "tls")]
        // The handshake done on this connection, not the session's word: with implicit TLS
        // the session counts as secure from its start.
        if self.tls.is_some() && !self.secured {
            return Err(Error::TlsUnavailable);
        }
        self.stage = Stage::Drain;
        Ok(())
    }

    /// Starts a piece of streamed message data.
    pub(crate) fn start_data<E>(&mut self) -> Result<(), Error<E>> {
        self.begin(Call::Message)?;
        // The message was refused midway (a BDAT chunk): its data goes nowhere, and the call
        // is done at once (`Idle`); `end` gives the status.
        #[cfg(feature = "chunking")]
        if self.refused.is_some() {
            return Ok(());
        }
        // Refused up front (no message refused at `begin`, or ended, takes data): a mistake
        // found midway would leave the session out of step.
        if self.session.sending().is_none() {
            return Err(Error::Use(UseError::NoDataExpected));
        }
        self.stage = Stage::Data { end: false };
        Ok(())
    }

    /// Ends the message's data (a streamed message's [`Client::end`](crate::Client::end)).
    pub(crate) fn start_end<E>(&mut self, job: &mut Job<'_>) -> Result<(), Error<E>> {
        self.begin(Call::Message)?;
        // Refused midway (a BDAT chunk): that is the message's status, and nothing is sent.
        #[cfg(feature = "chunking")]
        if let Some(status) = self.refused.take() {
            job.status = Some(status);
            return Ok(());
        }
        #[cfg(not(feature = "chunking"))]
        let _ = job;
        self.end_data()
    }

    fn end_data<E>(&mut self) -> Result<(), Error<E>> {
        self.session.end_data(&mut self.out)?;
        self.stage = Stage::End;
        Ok(())
    }

    /// Says QUIT.
    pub(crate) fn start_quit<E>(&mut self) -> Result<(), Error<E>> {
        self.begin(Call::Quit)?;
        self.session.quit(&mut self.out)?;
        self.stage = Stage::Quit;
        Ok(())
    }

    /// What the loop does next. `now` starts the deadline of a wait that begins.
    pub(crate) fn poll<E>(&mut self, now: u64, job: &mut Job<'_>) -> Result<Want, Error<E>> {
        loop {
            match self.stage {
                // With BDAT no 354 comes: once MAIL and every RCPT are answered (and the
                // message still stands), the data goes, or a streamed message's `begin` is done.
                #[cfg(feature = "chunking")]
                Stage::Envelope
                    if self.session.replies_due() == 0 && self.session.sending().is_some() =>
                {
                    if job.body.is_none() {
                        return Ok(self.done());
                    }
                    self.stage = Stage::Data { end: true };
                    continue;
                }
                // BDAT: each chunk is answered; past `BDAT_WINDOW` unanswered ones, the
                // replies are read before more data goes (below), so a server blocked writing
                // them to a full socket is never waited on while it waits on this side.
                #[cfg(feature = "chunking")]
                Stage::Data { .. } if self.session.replies_due() >= BDAT_WINDOW => {}
                Stage::Data { end } => {
                    let Some(body) = job.body.as_mut() else {
                        return Err(Error::Use(UseError::NoDataExpected));
                    };
                    if self.feed(body)? {
                        if !end {
                            return Ok(self.done());
                        }
                        self.end_data()?;
                    }
                }
                Stage::Drain
                    if self.session.can_start_transaction() || self.session.replies_due() == 0 =>
                {
                    self.send_envelope(job)?;
                }
                _ => {}
            }
            if !self.out.transmit().is_empty() {
                // Nothing goes out while a reply no command on the wire asked for waits in
                // the input (a reply riding with the greeting or the 354).
                self.stray()?;
                let phase = self.phase();
                let deadline = self.deadline(now, phase);
                return Ok(Want::Write { deadline, phase });
            }
            #[cfg(feature = "tls")]
            if let Stage::Handshake { .. } = self.stage {
                return Ok(Want::Handshake {
                    deadline: self.deadline_from(now, Phase::Command),
                });
            }
            if self.stage == Stage::Idle {
                return Ok(self.done());
            }
            match self.take_reply()? {
                Step::Incomplete => {
                    if self.filled == self.input.len() && !self.trim() {
                        return Err(Error::ReplyTooLong);
                    }
                    let phase = self.phase();
                    let deadline = self.deadline(now, phase);
                    return Ok(Want::Read { deadline, phase });
                }
                step => {
                    self.deadline = None;
                    if self.on_step(step, job)? {
                        return Ok(self.done());
                    }
                }
            }
        }
    }

    /// The call is done. Its wait ends with it: a later call (streamed data after a
    /// partial write, say) starts its own.
    fn done(&mut self) -> Want {
        self.stage = Stage::Idle;
        self.deadline = None;
        Want::Done
    }

    /// Fails when the input holds bytes no command on the wire asked for (but a 421), or
    /// holds the rest of a reply whose first bytes came before its command was sent.
    fn stray<E>(&mut self) -> Result<(), Error<E>> {
        if self.budget > 0 && !self.unsure {
            return Ok(());
        }
        match unprompted(&self.input[..self.filled]) {
            Unprompted::Premature(e) => Err(Error::Protocol(e)),
            u => {
                self.unsure = u == Unprompted::Unsure;
                Ok(())
            }
        }
    }

    /// Makes room in a full input that holds no whole reply, for a reply longer than the
    /// buffer whose code and first words decide (a refusal's long explanation): the first
    /// line is cut to the text a [`Reply`] keeps, the completed lines after it are dropped,
    /// and a line still arriving is cut to its code and separator, the rest of it skipped as
    /// it comes ([`Engine::received`]). A long refusal of the end of data must not leave the
    /// message in doubt, nor a long 421 at the greeting look like a permanent failure. Not
    /// for EHLO's (or HELO's) positive reply (every line is a capability) nor an AUTH
    /// challenge: false there, and when nothing can go (an input buffer under about 80
    /// bytes cannot keep a first line and the code of the next). Out of line: it is seldom
    /// needed, and inlined its locals sat in the polling frame, under every reply's parsing.
    #[inline(never)]
    fn trim(&mut self) -> bool {
        let held = &self.input[..self.filled];
        // EHLO's (or HELO's) 250 and an AUTH challenge (334): every line counts.
        let counts = match self.stage {
            Stage::Hello => self.phase() != Phase::Greeting && held.first() == Some(&b'2'),
            Stage::Auth => held.first() == Some(&b'3'),
            _ => false,
        };
        if counts {
            return false;
        }
        // The code, its separator and the text a Reply keeps of the first line, and a byte
        // more: the Reply knows its text was cut.
        const FIRST: usize = 4 + crate::reply::REPLY_TEXT + 1;
        let (first, last) = match (
            held.iter().position(|&b| b == b'\n'),
            held.iter().rposition(|&b| b == b'\n'),
        ) {
            (Some(first), Some(last)) => (first + 1, last + 1),
            _ => (0, 0),
        };
        // Lines dropped count toward the core's cap on a reply's lines (those it read since
        // the last trim count again when it reads the rest: the cap can let through up to a
        // buffer's worth of lines more, never an unbounded number).
        let gone = held[first..last].iter().filter(|&&b| b == b'\n').count();
        self.dropped = self.dropped.saturating_add(gone);
        if self.dropped >= postline_proto::reply::MAX_LINES {
            return false;
        }
        let mut end = first;
        if first > FIRST + 2 {
            self.input[FIRST..FIRST + 2].copy_from_slice(b"\r\n");
            end = FIRST + 2;
        }
        // The line still arriving (the first, when no line is complete): its code and
        // separator (and, for the first line, the text kept), then skipped up to its LF.
        let keep = if last == 0 { FIRST } else { 4 };
        let tail = self.filled - last;
        if tail > keep + 1 {
            self.input.copy_within(last..last + keep, end);
            self.input[end + keep] = b'\r';
            end += keep + 1;
            self.skipping = true;
        } else {
            self.input.copy_within(last..self.filled, end);
            end += tail;
        }
        if end == self.filled {
            return false;
        }
        self.filled = end;
        // The core's place in the old bytes is no place in these: it reads the reply again.
        self.session.input_rewritten();
        true
    }

    /// `n` bytes of the output were written; true when all of it is out (flush the stream).
    pub(crate) fn written(&mut self, n: usize) -> bool {
        self.out.advance(n);
        let all = self.out.transmit().is_empty();
        if all {
            self.deadline = None;
            // Every released command is on the wire: this many replies may come now.
            self.budget = self.session.replies_due();
        }
        all
    }

    /// `n` bytes were read into [`Engine::space`]; 0 is the server closing.
    pub(crate) fn received<E>(&mut self, n: usize) -> Result<(), Error<E>> {
        if n > 0 {
            let mut n = n;
            if self.skipping {
                // The rest of a line cut by `trim`: dropped up to its LF.
                let at = self.filled;
                match self.input[at..at + n].iter().position(|&b| b == b'\n') {
                    None => return Ok(()),
                    Some(lf) => {
                        self.input.copy_within(at + lf..at + n, at);
                        n -= lf;
                        self.skipping = false;
                    }
                }
            }
            self.filled += n;
            return Ok(());
        }
        match self.session.handle_close(&self.input[..self.filled]) {
            Ok(()) => {
                self.closed = true;
                Ok(())
            }
            Err(SessionError::ConnectionClosed { phase }) => Err(Error::Closed(phase)),
            Err(e) => Err(Error::Protocol(e)),
        }
    }

    /// The TLS handshake is done: EHLO again after STARTTLS (RFC 3207), or the greeting
    /// after implicit TLS.
    #[cfg(feature = "tls")]
    pub(crate) fn handshaken<E>(&mut self) -> Result<(), Error<E>> {
        self.secured = true;
        if self.stage == (Stage::Handshake { implicit: false }) {
            self.session.tls_established(&mut self.out)?;
        }
        self.stage = Stage::Hello;
        Ok(())
    }

    /// What a failure means for the call under way: after the end of data was written, the
    /// message is in doubt; after QUIT, a close is the expected end; a failed TLS step
    /// leaves the stream unusable.
    pub(crate) fn settle<E>(&mut self, e: Error<E>) -> Result<(), Error<E>> {
        let stage = self.stage;
        self.deadline = None;
        // A mistake in the call found before the envelope was released (no recipient, too
        // long for the buffer) leaves the session in step, as a refusal does.
        let in_step =
            e.leaves_session_open() || (stage == Stage::Drain && matches!(e, Error::Use(_)));
        let result = match stage {
            Stage::End if self.session.in_doubt(&self.out).next().is_some() => Err(match e {
                Error::Closed(p) | Error::Timeout(p) => Error::InDoubt(p),
                // A 421 is an answer: the message was not taken (deferred).
                Error::ServiceClosing(r) => Error::ServiceClosing(r),
                _ => Error::InDoubt(Phase::DataEnd),
            }),
            // After QUIT a server may just close.
            Stage::Quit if matches!(e, Error::Closed(_)) => Ok(()),
            #[cfg(feature = "tls")]
            Stage::StartTls | Stage::Handshake { .. } => {
                self.unusable = true;
                Err(e)
            }
            _ => Err(e),
        };
        // Decided after what the output says about the end of data (in doubt or not).
        if in_step {
            self.stage = match stage {
                Stage::Hello | Stage::Auth => Stage::Refused,
                _ => Stage::Idle,
            };
        } else {
            self.break_off();
        }
        result
    }

    fn phase(&self) -> Phase {
        self.session.phase().unwrap_or(Phase::Command)
    }

    /// Acts on one reply's meaning; true when the call is done. Out of line: inlined, it
    /// grows both the code and the polling frame.
    #[inline(never)]
    fn on_step<E>(&mut self, step: Step, job: &mut Job<'_>) -> Result<bool, Error<E>> {
        match (self.stage, step) {
            (Stage::Hello, Step::Ready) => return self.after_hello(),
            #[cfg(feature = "tls")]
            (Stage::StartTls, Step::StartTls) => {
                // Whatever the server sent after its 220 is discarded unread (RFC 3207 5:
                // text injected before the handshake); EHLO is said again after it (4.2).
                self.filled = 0;
                self.stage = Stage::Handshake { implicit: false };
            }
            #[cfg(feature = "tls")]
            (Stage::StartTls, Step::StartTlsRefused) => return Err(Error::TlsUnavailable),
            (Stage::Auth, Step::Authenticated) => return Ok(true),
            (Stage::Envelope | Stage::End, Step::Rcpt { index, code }) => {
                if let Some(c) = job.codes.get_mut(index as usize) {
                    *c = code;
                }
            }
            (Stage::Envelope, Step::SendData) => match job.body {
                Some(_) => self.stage = Stage::Data { end: true },
                None => return Ok(true),
            },
            (Stage::Envelope | Stage::End, Step::Done(status)) => {
                job.status = Some(status);
                return Ok(true);
            }
            // A BDAT chunk refused (RFC 3030 2: no more data may follow): the message ends
            // here; a streamed one's status waits for `end`.
            #[cfg(feature = "chunking")]
            (Stage::Data { end }, Step::Done(status)) => {
                if end {
                    job.status = Some(status);
                } else {
                    self.refused = Some(status);
                }
                return Ok(true);
            }
            (Stage::Quit, Step::Closed) => return Ok(true),
            // Closed as the session expected (after QUIT), yet a new call is under way: it
            // cannot go on (reading again would only find the close again).
            (_, Step::Closed) => return Err(Error::Closed(self.phase())),
            _ => {}
        }
        Ok(false)
    }

    /// EHLO (or HELO) is done: STARTTLS when asked for and not yet in place, then AUTH when
    /// credentials were given. True when connecting is done.
    #[inline(never)]
    fn after_hello<E>(&mut self) -> Result<bool, Error<E>> {
        #[cfg(feature = "tls")]
        if self.tls == Some(crate::tls::Mode::StartTls) && !self.secured {
            self.stage = Stage::StartTls;
            if !self.session.capabilities().has(Extension::StartTls) {
                return Err(Error::TlsUnavailable);
            }
            // A reply already waiting would be taken for the answer to STARTTLS.
            if self.filled != 0 {
                return Err(Error::Tls(crate::error::TlsFailure::Protocol));
            }
            self.session.start_tls(&mut self.out)?;
            return Ok(false);
        }
        let Some((user, secret)) = self.config.user else {
            return Ok(true);
        };
        if !self.session.is_tls() && !self.config.allow_plaintext_auth {
            return Err(Error::AuthUnavailable);
        }
        // Credentials go only to a server that asked for them (AUTH in its EHLO reply): not
        // blind after HELO, and not to one that never offers AUTH.
        if !self.session.capabilities().has(Extension::Auth) {
            return Err(Error::AuthUnavailable);
        }
        let offered = self.session.capabilities().auth();
        let token = !matches!(secret, Secret::Password(_));
        let mechanism = Mechanism::preference(token, self.session.is_tls())
            .iter()
            .copied()
            .filter(|m| secret.allows(*m))
            .find(|m| offered.contains(*m))
            .ok_or(Error::AuthUnavailable)?;
        let creds = secret.credentials(user);
        self.session
            .authenticate(mechanism, &creds, &mut self.out)?;
        self.stage = Stage::Auth;
        Ok(false)
    }

    /// MAIL, each RCPT (and DATA): the parameters the server's capabilities allow.
    #[inline(never)]
    fn send_envelope<E>(&mut self, job: &Job<'_>) -> Result<(), Error<E>> {
        let Some(Outgoing {
            from,
            to,
            size,
            body,
        }) = job.envelope
        else {
            return Err(Error::Use(UseError::NotReady));
        };
        let from = ReversePath::Address(from);
        let opts = MessageOptions {
            size: size.map(|n| n as u64),
            body,
            smtputf8: to.iter().any(|a| a.needs_smtputf8()) || from.needs_smtputf8(),
            ..MessageOptions::default()
        };
        let n = negotiate(&opts, self.session.capabilities(), self.session.is_tls())
            .map_err(Error::Incompatible)?;
        let env = Envelope {
            from: &from,
            to,
            mail: n.mail,
            rcpt: n.rcpt,
        };
        self.session.start_transaction(&env, &mut self.out)?;
        self.stage = Stage::Envelope;
        Ok(())
    }

    /// Puts as much of the body into the output buffer as fits, in pieces at most half the
    /// free room (stuffing and CRLF at most double a piece); true when all of it is in.
    #[inline(never)]
    fn feed<E>(&mut self, body: &mut Body<'_>) -> Result<bool, Error<E>> {
        loop {
            let bytes = body.current();
            if bytes.is_empty() {
                return Ok(true);
            }
            // With BDAT each piece is a chunk: its `BDAT n` line (at most 27 bytes) first.
            #[cfg(feature = "chunking")]
            let room = if self.session.chunking() {
                self.out.remaining().saturating_sub(BDAT_LINE) / 2
            } else {
                self.out.remaining() / 2
            };
            #[cfg(not(feature = "chunking"))]
            let room = self.out.remaining() / 2;
            if room < 2 {
                if self.out.transmit().is_empty() {
                    return Err(Error::Use(UseError::BufferFull(BufferFull { needed: 4 })));
                }
                return Ok(false);
            }
            let n = bytes.len().min(room);
            self.session.send_data(&bytes[..n], &mut self.out)?;
            body.consume(n);
            // BDAT: a full window of unanswered chunks waits for their replies (`poll`), the
            // last one (`BDAT 0 LAST`) too.
            #[cfg(feature = "chunking")]
            if self.session.replies_due() >= BDAT_WINDOW {
                return Ok(false);
            }
            if self.out.remaining() < self.out.transmit().len() {
                return Ok(false);
            }
        }
    }

    /// One reply from the input, if a whole one is there (or an event the last reply
    /// decided), consumed and turned into a [`Step`]; [`Step::Incomplete`] when there is none.
    /// (A step of its own rather than an `Option`: wrapping the result in one, and turning
    /// `Option<Result>` into `Result<Option>`, copied the error twice more.)
    #[inline(never)]
    fn take_reply<E>(&mut self) -> Result<Step, Error<E>> {
        if core::mem::take(&mut self.closed) {
            return Ok(Step::Closed);
        }
        // What the last reply decided comes out first; then the input.
        let (used, ev) = match self
            .session
            .handle_input(&[], &mut self.out)
            .map_err(Error::Protocol)?
        {
            (_, Some(ev)) => (0, Some(ev)),
            (_, None) if self.filled == 0 => return Ok(Step::Incomplete),
            (_, None) => {
                self.stray()?;
                self.session
                    .handle_input(&self.input[..self.filled], &mut self.out)
                    .map_err(Error::Protocol)?
            }
        };
        let step = match &ev {
            Some(ev) => meaning(
                &mut self.session,
                &mut self.out,
                &self.config,
                &mut self.auth_rounds,
                &mut self.last_reply,
                ev,
            ),
            None if used > 0 => Ok(Step::Other),
            None => Ok(Step::Incomplete),
        };
        // The reply is taken out of the input whatever it meant: a refusal left there would
        // answer the next call.
        if used > 0 {
            self.dropped = 0;
            self.unsure = false;
            self.input.copy_within(used..self.filled, 0);
            self.filled -= used;
            self.budget = self.budget.saturating_sub(1);
        }
        step
    }
}

/// The core's session for `config`, announcing the name the config borrows, with room for
/// one transaction; `implicit_tls`: the connection is encrypted from its first byte.
fn session_for<'b, E>(
    config: &Config<'b>,
    implicit_tls: bool,
) -> Result<Session<&'b str, 1>, Error<E>> {
    let mut sc = SessionConfig::borrowing(Domain::new(config.hello)?);
    sc.pipelining = config.pipelining;
    #[cfg(feature = "chunking")]
    {
        sc.chunking = config.chunking;
    }
    sc.implicit_tls = implicit_tls;
    Ok(Session::with_transactions(sc))
}

impl Drop for Engine<'_> {
    /// The output buffer is the caller's and may still hold an AUTH line never written (a
    /// connection that failed first): zeroed before it is given back. What was written is
    /// zeroed as it leaves.
    fn drop(&mut self) {
        self.out.discard();
    }
}

/// Answers an AUTH challenge. Its SASL buffers sit in the frame of [`meaning`], its one
/// caller, which is on the stack only while a reply's meaning is worked out, never while
/// replies are parsed (the deepest point of a send): kept out of line, it cost more code
/// (48 B of a Cortex-M4 image, 93 B on x86_64 with CRAM-MD5) and saved no stack.
fn respond<E>(
    session: &mut Session<&str, 1>,
    out: &mut Outbox<FixedBuf<'_>>,
    config: &Config<'_>,
    challenge: &[u8],
) -> Result<(), Error<E>> {
    let Some((user, secret)) = config.user else {
        return Err(Error::AuthUnavailable);
    };
    let creds = secret.credentials(user);
    session.auth_respond(&creds, challenge, out)?;
    Ok(())
}

/// What an event of the core means to this driver. A deciding reply's text goes to `last`,
/// once; steps and errors carry its code. Out of line, so the reply's handling is not in
/// the frame that reads it. The event is borrowed: taken by value, it (and a reply in it)
/// was copied on the way in and again to be looked at.
#[inline(never)]
fn meaning<E>(
    session: &mut Session<&str, 1>,
    out: &mut Outbox<FixedBuf<'_>>,
    config: &Config<'_>,
    auth_rounds: &mut u32,
    last: &mut Option<Reply>,
    ev: &Event<'_>,
) -> Result<Step, Error<E>> {
    let mut keep = |r: &ProtoReply<'_>| {
        Reply::keep(last, r);
        r.code()
    };
    Ok(match ev {
        Event::Ready => Step::Ready,
        #[cfg(feature = "tls")]
        Event::StartTls => Step::StartTls,
        #[cfg(feature = "tls")]
        Event::StartTlsRefused(r) => {
            // Its code tells a 454 (try later) from a refusal.
            keep(r);
            Step::StartTlsRefused
        }
        Event::Rejected(r) => return Err(Error::Rejected(keep(r))),
        Event::ServiceClosing(r) => return Err(Error::ServiceClosing(keep(r))),
        Event::AuthChallenge(challenge) => {
            *auth_rounds += 1;
            if *auth_rounds > MAX_ROUNDS {
                return Err(Error::AuthRounds);
            }
            respond(session, out, config, challenge)?;
            Step::Other
        }
        Event::Authenticated => Step::Authenticated,
        Event::AuthFailed(r) | Event::AuthServerUnverified(r) => {
            return Err(Error::AuthFailed(keep(r)))
        }
        Event::RecipientResult { index, reply, .. } => Step::Rcpt {
            index: *index,
            code: reply.code().value(),
        },
        Event::SendData(_) => Step::SendData,
        Event::TransactionDone { outcome, .. } => Step::Done(match outcome {
            TxOutcome::Delivered(r) => Status {
                delivered: true,
                failed_at: None,
                code: Some(keep(r)),
            },
            TxOutcome::Failed { at, reply } => Status {
                delivered: false,
                failed_at: Some(*at),
                code: reply.as_ref().map(keep),
            },
            // Checks and LMTP are not started by this driver.
            _ => Status {
                delivered: false,
                failed_at: None,
                code: None,
            },
        }),
        Event::Closed => Step::Closed,
        _ => Step::Other,
    })
}
