//! The console's words in English and Chinese. Every page takes one [`Text`]; a string
//! missing from a language is a compile error, not an untranslated page.

/// A language the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// The language's tag, as in `<html lang>` and the language cookie.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The language a cookie or a `lang` parameter names.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        match tag {
            "en" => Some(Lang::En),
            "zh-CN" | "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The language an `Accept-Language` header prefers among those the console speaks;
    /// English when it names neither.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut best = (0.0f32, Lang::En);
        for part in accept_language.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > best.0 {
                best = (q, lang);
            }
        }
        best.1
    }

    /// The other language, which the switch on every page offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// The words of this language.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

/// Every word the console shows.
#[derive(Debug)]
pub struct Text {
    pub language_name: &'static str,
    pub console: &'static str,
    pub overview: &'static str,
    pub users: &'static str,
    pub service_keys: &'static str,
    pub signing_keys: &'static str,
    pub audit_log: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub name: &'static str,
    pub password: &'static str,
    pub password_again: &'static str,
    pub choose_password: &'static str,
    pub choose_password_for: &'static str,
    pub password_rule: &'static str,
    pub passwords_differ: &'static str,
    pub password_too_short: &'static str,
    pub password_too_long: &'static str,
    pub bad_credentials: &'static str,
    pub bad_link: &'static str,
    pub too_many_attempts: &'static str,
    pub new_today: &'static str,
    pub new_7_days: &'static str,
    pub new_30_days: &'static str,
    pub live_sessions: &'static str,
    pub logins_per_day: &'static str,
    pub wechat_errors: &'static str,
    pub database_size: &'static str,
    pub last_backup: &'static str,
    pub never: &'static str,
    pub replicated_by_litestream: &'static str,
    pub search: &'static str,
    pub search_hint: &'static str,
    pub no_users: &'static str,
    pub next_page: &'static str,
    pub nickname: &'static str,
    pub phone: &'static str,
    pub apps: &'static str,
    pub created: &'static str,
    pub banned_until: &'static str,
    pub reason: &'static str,
    pub identities: &'static str,
    pub profile: &'static str,
    pub avatar: &'static str,
    pub gender: &'static str,
    /// Gender 0, 1 and 2, as WeChat numbers them.
    pub genders: [&'static str; 3],
    pub region: &'static str,
    pub sessions: &'static str,
    pub status: &'static str,
    pub last_seen: &'static str,
    pub expires: &'static str,
    pub revoke: &'static str,
    pub revoke_confirm: &'static str,
    pub ban: &'static str,
    pub ban_until_hint: &'static str,
    pub unban: &'static str,
    pub banned: &'static str,
    pub not_banned: &'static str,
    pub conflicts: &'static str,
    pub conflicts_hint: &'static str,
    pub merge_into_this: &'static str,
    pub merge_confirm: &'static str,
    pub no_sessions: &'static str,
    pub history: &'static str,
    pub when: &'static str,
    pub who: &'static str,
    pub action: &'static str,
    pub target: &'static str,
    pub from: &'static str,
    pub detail: &'static str,
    pub scopes: &'static str,
    pub create: &'static str,
    pub last_used: &'static str,
    pub revoked: &'static str,
    pub live: &'static str,
    pub expired: &'static str,
    pub key_shown_once: &'static str,
    pub no_service_keys: &'static str,
    pub kid: &'static str,
    pub key_use: &'static str,
    pub key_state: &'static str,
    pub rotate: &'static str,
    pub rotate_hint: &'static str,
    pub retire: &'static str,
    pub retire_confirm: &'static str,
    pub back: &'static str,
    pub not_found: &'static str,
    pub forbidden: &'static str,
    pub refused: &'static str,
    pub server_error: &'static str,
}

const EN: Text = Text {
    language_name: "English",
    console: "wxauth console",
    overview: "Overview",
    users: "Users",
    service_keys: "Service keys",
    signing_keys: "Signing keys",
    audit_log: "Audit log",
    sign_in: "Sign in",
    sign_out: "Sign out",
    name: "Name",
    password: "Password",
    password_again: "Password, again",
    choose_password: "Choose a password",
    choose_password_for: "Choose the password of",
    password_rule: "At least 12 characters.",
    passwords_differ: "The two passwords differ.",
    password_too_short: "The password is too short: at least 12 characters.",
    password_too_long: "The password is too long.",
    bad_credentials: "Wrong name or password.",
    bad_link: "This link is unknown, used or expired. Ask for a new one (wxauth admins reset NAME).",
    too_many_attempts: "Too many sign-in attempts. Wait a few minutes and try again.",
    new_today: "New today",
    new_7_days: "New, 7 days",
    new_30_days: "New, 30 days",
    live_sessions: "Live sessions",
    logins_per_day: "Logins per day, last 30 days (UTC)",
    wechat_errors: "WeChat errors, last 24 h",
    database_size: "Database size",
    last_backup: "Last backup",
    never: "never",
    replicated_by_litestream: "Litestream replicates continuously",
    search: "Search",
    search_hint: "id, openid, unionid, phone, or the start of a nickname",
    no_users: "No users found.",
    next_page: "Next page",
    nickname: "Nickname",
    phone: "Phone",
    apps: "Apps",
    created: "Created",
    banned_until: "Banned until",
    reason: "Reason",
    identities: "Identities",
    profile: "Profile",
    avatar: "Avatar",
    gender: "Gender",
    genders: ["-", "male", "female"],
    region: "Region",
    sessions: "Sessions",
    status: "Status",
    last_seen: "Last seen",
    expires: "Expires",
    revoke: "Revoke",
    revoke_confirm: "Revoke? Its token stops working at once.",
    ban: "Ban",
    ban_until_hint: "until: a time (2027-01-31T00:00:00Z) or a duration (7d); empty is forever",
    unban: "Unban",
    banned: "Banned",
    not_banned: "Not banned",
    conflicts: "Merge conflicts",
    conflicts_hint: "These users share a unionid with this one: they are one person.",
    merge_into_this: "Merge into this user",
    merge_confirm: "Merge? The other user's identities and sessions move here.",
    no_sessions: "No sessions.",
    history: "History",
    when: "When",
    who: "Who",
    action: "Action",
    target: "Target",
    from: "From",
    detail: "Detail",
    scopes: "Scopes",
    create: "Create",
    last_used: "Last used",
    revoked: "revoked",
    live: "live",
    expired: "expired",
    key_shown_once: "Store this key now: it is kept only as a hash and is never shown again.",
    no_service_keys: "No service keys.",
    kid: "Key id",
    key_use: "Use",
    key_state: "State",
    rotate: "Rotate keys",
    rotate_hint: "A new signing key signs from now on; tokens signed before stay valid. The next JWT key becomes active.",
    retire: "Retire",
    retire_confirm: "Retire? Everything signed with this key stops working.",
    back: "Back",
    not_found: "Not found.",
    forbidden: "This request was refused: it did not come from a console page. Reload the page and try again.",
    refused: "Refused",
    server_error: "Something went wrong on the server; the log has the details.",
};

const ZH: Text = Text {
    language_name: "中文",
    console: "wxauth 管理后台",
    overview: "概览",
    users: "用户",
    service_keys: "服务密钥",
    signing_keys: "签名密钥",
    audit_log: "审计日志",
    sign_in: "登录",
    sign_out: "退出",
    name: "用户名",
    password: "密码",
    password_again: "再次输入密码",
    choose_password: "设置密码",
    choose_password_for: "设置密码：",
    password_rule: "至少 12 个字符。",
    passwords_differ: "两次输入的密码不一致。",
    password_too_short: "密码太短：至少 12 个字符。",
    password_too_long: "密码太长。",
    bad_credentials: "用户名或密码错误。",
    bad_link: "此链接无效、已使用或已过期。请重新获取（wxauth admins reset NAME）。",
    too_many_attempts: "登录尝试次数过多，请稍后再试。",
    new_today: "今日新增",
    new_7_days: "7 天新增",
    new_30_days: "30 天新增",
    live_sessions: "有效会话",
    logins_per_day: "近 30 天每日登录（UTC）",
    wechat_errors: "近 24 小时微信接口错误",
    database_size: "数据库大小",
    last_backup: "最近备份",
    never: "从未",
    replicated_by_litestream: "Litestream 持续复制中",
    search: "搜索",
    search_hint: "用户 id、openid、unionid、手机号或昵称开头",
    no_users: "没有找到用户。",
    next_page: "下一页",
    nickname: "昵称",
    phone: "手机号",
    apps: "应用",
    created: "创建时间",
    banned_until: "封禁至",
    reason: "原因",
    identities: "身份",
    profile: "资料",
    avatar: "头像",
    gender: "性别",
    genders: ["-", "男", "女"],
    region: "地区",
    sessions: "会话",
    status: "状态",
    last_seen: "最近活动",
    expires: "过期时间",
    revoke: "撤销",
    revoke_confirm: "确定撤销？其令牌将立即失效。",
    ban: "封禁",
    ban_until_hint: "截止：时间（2027-01-31T00:00:00Z）或时长（7d）；留空为永久",
    unban: "解封",
    banned: "已封禁",
    not_banned: "未封禁",
    conflicts: "合并冲突",
    conflicts_hint: "这些用户与此用户拥有相同的 unionid：他们是同一个人。",
    merge_into_this: "合并到此用户",
    merge_confirm: "确定合并？另一用户的身份和会话将移到这里。",
    no_sessions: "没有会话。",
    history: "操作记录",
    when: "时间",
    who: "操作者",
    action: "操作",
    target: "对象",
    from: "来源",
    detail: "详情",
    scopes: "权限",
    create: "创建",
    last_used: "最近使用",
    revoked: "已撤销",
    live: "有效",
    expired: "已过期",
    key_shown_once: "请立即保存此密钥：服务器只保存其哈希，之后无法再次显示。",
    no_service_keys: "没有服务密钥。",
    kid: "密钥 id",
    key_use: "用途",
    key_state: "状态",
    rotate: "轮换密钥",
    rotate_hint: "新的签名密钥从现在起签发令牌；之前签发的令牌仍然有效。下一个 JWT 密钥开始生效。",
    retire: "停用",
    retire_confirm: "确定停用？用此密钥签名的一切将立即失效。",
    back: "返回",
    not_found: "未找到。",
    forbidden: "请求被拒绝：它并非来自管理后台页面。请刷新页面后重试。",
    refused: "已拒绝",
    server_error: "服务器出错，详情见日志。",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_spoken_language() {
        assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(Lang::negotiate("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En);
        assert_eq!(Lang::negotiate("fr-FR, zh-TW;q=0.5"), Lang::Zh);
        assert_eq!(Lang::negotiate("fr-FR,de"), Lang::En);
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate("en;q=0.2, zh;q=0.7"), Lang::Zh);
    }

    #[test]
    fn tags_round_trip() {
        for lang in [Lang::En, Lang::Zh] {
            assert_eq!(Lang::from_tag(lang.tag()), Some(lang));
            assert_eq!(lang.other().other(), lang);
        }
        assert_eq!(Lang::from_tag("de"), None);
    }
}
