//! The answer to the command at the front of a connection's queue, read packet by packet:
//! OK and ERR, text and binary result sets (several for a multi-statement query), a prepare's
//! parameter and column definitions, field lists, with or without CLIENT_DEPRECATE_EOF.

use super::{Answer, Conn, Finished};
use crate::wire::mysql::packet::{self, Packet, Reader};
use crate::wire::mysql::transaction::Command;

/// What a server packet did to the command at the front.
pub(super) enum Step {
    Used,
    /// Not this command's: hand it to the next.
    Again,
    /// It made no sense here: the server side resynchronises.
    Lost,
}

impl Conn {
    /// One server packet for the command at the front of the queue.
    pub(super) fn answer(&mut self, p: &Packet<'_>, ts: i64, out: &mut Finished) -> Step {
        let deprecate_eof =
            self.login_seen && self.capabilities & packet::CLIENT_DEPRECATE_EOF != 0;
        let tracks = self.login_seen && self.capabilities & packet::CLIENT_SESSION_TRACK != 0;
        let Some(cur) = self.pending.front_mut() else {
            return Step::Used;
        };
        cur.tx.resp_bytes += std::mem::take(&mut self.server.bytes);
        cur.tx.end_ns = ts;
        let first = p.first();
        if p.is_err() && !matches!(cur.answer, Answer::PrepareEof { .. }) {
            cur.tx.error = Some(packet::error(p.body));
            self.finish(out);
            return Step::Used;
        }
        if first == Some(0xff) && !p.is_err() {
            // MariaDB's progress report: the command goes on.
            return Step::Used;
        }
        match cur.answer {
            Answer::First => match (cur.tx.command, first) {
                (Command::StmtPrepare, Some(0x00)) => {
                    let mut r = Reader(p.body.get(1..).unwrap_or(&[]));
                    let (Some(id), Some(columns), Some(params)) = (r.u32(), r.u16(), r.u16())
                    else {
                        return Step::Lost;
                    };
                    cur.tx.statement_id = Some(id);
                    cur.tx.prepared = Some((params, columns));
                    if let Some(text) = cur.prepare_text.take() {
                        self.remember(id, text);
                    }
                    self.last_prepared = Some(id);
                    match self.pending.front_mut() {
                        Some(cur) if params > 0 || columns > 0 => {
                            cur.answer = Answer::PrepareDefs { params, columns }
                        }
                        _ => self.finish(out),
                    }
                }
                (Command::Statistics, _) => self.finish(out),
                (Command::StmtFetch, _) => {
                    cur.tx.result_set = true;
                    cur.answer = Answer::Rows;
                    return self.answer(p, ts, out);
                }
                (_, Some(0x00)) => {
                    let ok = packet::ok(p.body);
                    if tracks {
                        if let Some(db) = packet::tracked_schema(p.body) {
                            self.set_database(db);
                        }
                    }
                    self.ok_result(ok, out);
                }
                (_, Some(0xfe)) if p.is_end() => {
                    // An EOF answers COM_SET_OPTION and COM_DEBUG; an auth switch answers
                    // COM_CHANGE_USER (its result comes later).
                    if cur.tx.command != Command::ChangeUser {
                        self.finish(out);
                    }
                }
                (Command::ChangeUser, _) => {}
                (Command::Query | Command::Unknown, Some(0xfb)) => {
                    // LOAD DATA LOCAL INFILE: the client sends the file, then OK or ERR.
                    cur.tx.local_infile = true;
                }
                (
                    Command::Query
                    | Command::StmtExecute
                    | Command::StmtBulkExecute
                    | Command::ProcessInfo
                    | Command::Unknown,
                    _,
                ) => {
                    let n = Reader(p.body).lenenc().unwrap_or(0);
                    if n == 0 || n > 0xffff {
                        return Step::Lost;
                    }
                    cur.tx.result_set = true;
                    cur.tx.results += 1;
                    cur.answer = Answer::Columns(n);
                }
                _ => return Step::Lost,
            },
            Answer::Columns(n) => {
                cur.answer = if n > 1 {
                    Answer::Columns(n - 1)
                } else {
                    Answer::AfterColumns
                };
            }
            Answer::AfterColumns if p.is_eof() => {
                let ok = packet::ok(p.body);
                if ok.status & packet::SERVER_STATUS_CURSOR_EXISTS != 0 {
                    // Rows come with COM_STMT_FETCH.
                    self.finish(out);
                } else {
                    cur.answer = Answer::Rows;
                }
            }
            Answer::AfterColumns | Answer::Rows => {
                if p.is_end() {
                    let ok = packet::ok(p.body);
                    cur.tx.warnings += ok.warnings as u64;
                    if ok.status & packet::SERVER_MORE_RESULTS_EXISTS != 0 {
                        cur.answer = Answer::First;
                    } else {
                        self.finish(out);
                    }
                } else {
                    cur.tx.rows += 1;
                    cur.answer = Answer::Rows;
                }
            }
            Answer::PrepareDefs { params, columns } => {
                cur.answer = match (params, columns) {
                    (1, c) if !deprecate_eof => Answer::PrepareEof { columns: c },
                    (1, 0) => return self.finish_step(out),
                    (1, c) => Answer::PrepareDefs {
                        params: 0,
                        columns: c,
                    },
                    (0, 1) if !deprecate_eof => Answer::PrepareEof { columns: 0 },
                    (0, 1) | (0, 0) => return self.finish_step(out),
                    (0, c) => Answer::PrepareDefs {
                        params: 0,
                        columns: c - 1,
                    },
                    (pa, c) => Answer::PrepareDefs {
                        params: pa - 1,
                        columns: c,
                    },
                };
            }
            Answer::PrepareEof { columns } => {
                if !p.is_eof() {
                    // No EOF after all: the prepare is answered; the packet is the next one's.
                    cur.tx.resp_bytes -= p.wire_len.min(cur.tx.resp_bytes);
                    self.server.bytes = p.wire_len;
                    self.finish(out);
                    return Step::Again;
                }
                if columns == 0 {
                    self.finish(out);
                } else {
                    cur.answer = Answer::PrepareDefs { params: 0, columns };
                }
            }
            Answer::FieldList => {
                if p.is_end() {
                    self.finish(out);
                }
            }
        }
        Step::Used
    }

    fn finish_step(&mut self, out: &mut Finished) -> Step {
        self.finish(out);
        Step::Used
    }

    /// An OK packet: the end of the answer, or of one result of several.
    fn ok_result(&mut self, ok: packet::Ok, out: &mut Finished) {
        let Some(cur) = self.pending.front_mut() else {
            return;
        };
        let t = &mut cur.tx;
        t.results += 1;
        t.affected_rows = Some(t.affected_rows.unwrap_or(0) + ok.affected_rows);
        if ok.insert_id != 0 {
            t.insert_id = ok.insert_id;
        }
        t.warnings += ok.warnings as u64;
        if ok.status & packet::SERVER_MORE_RESULTS_EXISTS != 0 {
            cur.answer = Answer::First;
        } else {
            self.finish(out);
        }
    }

    /// The command at the front is answered.
    fn finish(&mut self, out: &mut Finished) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        if p.reported {
            self.reported -= 1;
        }
        let t = *p.tx;
        if t.error.is_none() {
            match t.command {
                Command::InitDb => {
                    if let Some(db) = &t.schema {
                        self.set_database(db.clone());
                    }
                }
                Command::ResetConnection | Command::ChangeUser => self.statements.clear(),
                _ => {}
            }
        }
        out.push(t);
    }
}
