//! A DNS transaction (query and response, or either alone) and its `dns.*` fields in ECS:
//! id, op_code, header_flags, response_code, question, answers, resolved_ip.

use super::message::{class_name, opcode_name, rcode_name, type_name, Message};
use super::Seen;
use crate::wire::analyzer::{Outcome, Record, Transaction};
use crate::wire::out::Fields;
use std::borrow::Cow;

pub struct DnsTx {
    pub query: Option<Seen>,
    pub response: Option<Seen>,
    /// Bytes of the TCP stream were lost while the query waited.
    pub gap: bool,
    /// The query type's name (the `operation` of the RED metrics).
    qtype: Cow<'static, str>,
}

impl DnsTx {
    fn new(query: Option<Seen>, response: Option<Seen>, gap: bool) -> DnsTx {
        let question = query
            .as_ref()
            .or(response.as_ref())
            .and_then(|s| s.msg.question.as_ref());
        DnsTx {
            qtype: question.map_or(Cow::Borrowed(""), |q| type_name(q.1)),
            query,
            response,
            gap,
        }
    }
    pub fn answered(query: Seen, response: Seen, gap: bool) -> DnsTx {
        DnsTx::new(Some(query), Some(response), gap)
    }
    pub fn unanswered(query: Seen, gap: bool) -> DnsTx {
        DnsTx::new(Some(query), None, gap)
    }
    pub fn unasked(response: Seen) -> DnsTx {
        DnsTx::new(None, Some(response), false)
    }

    /// The response when there is one, else the query: what the event describes.
    fn main(&self) -> Option<&Message> {
        self.response
            .as_ref()
            .or(self.query.as_ref())
            .map(|s| &s.msg)
    }
}

impl Transaction for DnsTx {
    fn record(&self) -> Record<'_> {
        let first = self.query.as_ref().or(self.response.as_ref());
        let start = first.map_or(0, |s| s.start_ns);
        let end = self
            .response
            .as_ref()
            .or(self.query.as_ref())
            .map_or(start, |s| s.end_ns.max(start));
        let rcode = self.response.as_ref().map(|r| r.msg.rcode());
        Record {
            start_ns: start,
            end_ns: end,
            // NXDOMAIN is an answer: Kubernetes search paths make many on healthy clusters.
            outcome: match (self.query.is_some(), rcode) {
                (true, Some(0 | 3)) => Outcome::Success,
                (true, Some(_)) => Outcome::Failure,
                _ => Outcome::Unknown,
            },
            reason: match (&self.query, &self.response) {
                (Some(_), None) => Some("response_missing"),
                (None, Some(_)) => Some("request_missing"),
                _ => None,
            },
            request_bytes: self.query.as_ref().map_or(0, |s| s.bytes),
            response_bytes: self.response.as_ref().map_or(0, |s| s.bytes),
            operation: &self.qtype,
            status: rcode.map_or("", rcode_name),
            gap: self.gap,
        }
    }

    fn write_fields<F: Fields>(&self, f: &mut F) {
        let Some(main) = self.main() else { return };
        f.open("dns");
        f.int("id", main.id as i64);
        f.word("op_code", opcode_name(main.opcode()));
        f.strs("header_flags", &main.header_flags());
        // What of RFC 1035 the query or the response breaks, each named once.
        let mut anomalies = Vec::new();
        for m in [&self.query, &self.response].into_iter().flatten() {
            for a in m.msg.anomalies() {
                if !anomalies.contains(&a) {
                    anomalies.push(a);
                }
            }
        }
        if !anomalies.is_empty() {
            f.strs("anomalies", &anomalies);
        }
        f.word(
            "type",
            if self.response.is_some() {
                "answer"
            } else {
                "query"
            },
        );
        if let Some(r) = &self.response {
            f.word("response_code", rcode_name(r.msg.rcode()));
        }
        // A response without a question section (mDNS) answers its query's.
        let question = main.question.as_ref().map(|q| (q, main)).or_else(|| {
            let q = &self.query.as_ref()?.msg;
            Some((q.question.as_ref()?, q))
        });
        if let Some(((name, qtype, qclass), from)) = question {
            f.open("question");
            f.str("name", name);
            if from.question_truncated {
                f.bool("name_truncated", true);
            }
            f.word("type", &type_name(*qtype));
            f.word("class", &class_name(*qclass));
            f.close();
        }
        if let Some(r) = &self.response {
            let [an, ns, ar] = r.msg.counts;
            f.int("answers_count", an as i64);
            f.int("authorities_count", ns as i64);
            f.int("additionals_count", ar as i64);
            if !r.msg.answers.is_empty() {
                f.open_list("answers");
                for a in &r.msg.answers {
                    f.open_item();
                    f.str("name", &a.name);
                    if a.name_truncated {
                        f.bool("name_truncated", true);
                    }
                    f.word("type", &type_name(a.rtype));
                    f.word("class", &class_name(a.class));
                    f.int("ttl", a.ttl as i64);
                    f.str("data", &a.data);
                    f.close();
                }
                f.close_list();
                let ips: Vec<&str> = r
                    .msg
                    .answers
                    .iter()
                    .filter(|a| {
                        matches!(a.rtype, 1 | 28) && a.data.parse::<std::net::IpAddr>().is_ok()
                    })
                    .map(|a| a.data.as_str())
                    .collect();
                if !ips.is_empty() {
                    f.strs("resolved_ip", &ips);
                }
            }
        }
        f.close();
    }
}
