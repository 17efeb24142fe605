//! Fuzz the host's DNS query handling (`bottle_host::dns::Handler`): any
//! bytes as a query, with a fake upstream (no network) whose answer the
//! input also picks. Every query must get an answer that parses as a DNS
//! message and, when the query had a whole header, carries its id; the
//! same query asked again (a cache hit when allowed) must too.
//!
//! Input layout: byte 0 picks the upstream's behaviour
//! ([`bottle_fuzz::dns::FuzzUpstream`]), the rest is the query.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, query)) = data.split_first() else {
        return;
    };
    bottle_fuzz::dns::check_host_query(mode, query);
});
