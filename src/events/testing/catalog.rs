//! The generator's randomness and vocabulary: a portable PRNG, words, tools per agent
//! role, models, policies and error types.

/// SplitMix64: tiny, fast, and fully specified, so seeds are portable.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi` (modulo bias is irrelevant here).
    pub(super) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub(super) fn percent(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
    pub(super) fn hex(&mut self, digits: usize) -> String {
        let mut out = String::with_capacity(digits);
        while out.len() < digits {
            out.push_str(&format!("{:016x}", self.next_u64() | 1));
        }
        out.truncate(digits);
        out
    }
    /// A content size: 100 B to 2 KB with a mean near 256 B.
    pub(super) fn content_bytes(&mut self) -> usize {
        const BUCKETS: [(u64, u64, u64); 5] = [
            (55, 100, 170),
            (28, 170, 320),
            (12, 320, 640),
            (4, 640, 1300),
            (1, 1300, 2048),
        ];
        let mut roll = self.range(0, 99);
        for (weight, lo, hi) in BUCKETS {
            if roll < weight {
                return self.range(lo, hi) as usize;
            }
            roll -= weight;
        }
        unreachable!("bucket weights add up to 100")
    }
    pub(super) fn text(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes + 16);
        while out.len() < bytes {
            if !out.is_empty() {
                out.push(' ');
            }
            let word: &&str = self.pick(&WORDS);
            out.push_str(word);
        }
        out.truncate(bytes);
        out
    }
}

pub(super) static WORDS: [&str; 48] = [
    "the", "order", "customer", "refund", "invoice", "account", "shipping", "delayed", "please", "check", "status",
    "policy", "payment", "failed", "update", "address", "request", "ticket", "priority", "service", "restart",
    "database", "latency", "error", "summary", "report", "quarter", "revenue", "contract", "renewal", "deadline",
    "meeting", "approve", "review", "document", "section", "clause", "risk", "escalate", "team", "can", "you", "help",
    "with", "my", "last", "week", "thanks",
];

pub(super) struct Tool {
    pub(super) name: &'static str,
    pub(super) sensitive: bool,
    pub(super) tool_type: &'static str,
}

const fn tool(name: &'static str, sensitive: bool, tool_type: &'static str) -> Tool {
    Tool {
        name,
        sensitive,
        tool_type,
    }
}

pub(super) static ROLES: [(&str, [Tool; 4]); 4] = [
    (
        "support",
        [
            tool("lookup_order", false, "function"),
            tool("search_tickets", false, "datastore"),
            tool("send_email", true, "function"),
            tool("issue_refund", true, "function"),
        ],
    ),
    (
        "billing",
        [
            tool("get_invoice", false, "function"),
            tool("list_payments", false, "datastore"),
            tool("update_payment_method", true, "function"),
            tool("issue_refund", true, "function"),
        ],
    ),
    (
        "research",
        [
            tool("web_search", false, "extension"),
            tool("fetch_url", false, "extension"),
            tool("summarize_document", false, "function"),
            tool("share_report", true, "function"),
        ],
    ),
    (
        "ops",
        [
            tool("run_query", false, "datastore"),
            tool("read_metrics", false, "function"),
            tool("restart_service", true, "function"),
            tool("page_oncall", true, "function"),
        ],
    ),
];

pub(super) static MODELS: [(&str, &str); 4] = [
    ("openai", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("aws.bedrock", "meta.llama3-70b-instruct-v1:0"),
    ("mistral_ai", "mistral-large-2411"),
];

pub(super) static POLICIES: [&str; 4] = [
    "pii-egress-v2",
    "spend-limit-v1",
    "prompt-injection-v3",
    "tool-allowlist-v1",
];
pub(super) static ERROR_TYPES: [&str; 4] = ["timeout", "rate_limited", "upstream_unavailable", "invalid_response"];
