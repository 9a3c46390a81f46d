//! The numeric replies the server sends, by their RFC 1459/2812 names
//! (modern.ircdocs.horse lists them), and which numeric answers which
//! error.

use crate::error::ErrorCode;

// Each constant is named as the specifications name it; the name is its
// documentation (modern.ircdocs.horse describes every one).

pub const RPL_WELCOME: &str = "001";
/// `<nick> <nick>!<user>@<host> <account> :You are now logged in as <account>`.
pub const RPL_LOGGEDIN: &str = "900";
/// `<nick> <nick>!<user>@<host> :You are now logged out`.
pub const RPL_LOGGEDOUT: &str = "901";
/// `<nick> :SASL authentication successful`.
pub const RPL_SASLSUCCESS: &str = "903";
/// `<nick> :SASL authentication failed`.
pub const ERR_SASLFAIL: &str = "904";
/// `<nick> :SASL message too long`.
pub const ERR_SASLTOOLONG: &str = "905";
/// `<nick> :SASL authentication aborted`.
pub const ERR_SASLABORTED: &str = "906";
/// `<nick> :You have already authenticated using SASL`.
pub const ERR_SASLALREADY: &str = "907";
/// `<nick> <mechanisms> :are available SASL mechanisms`.
pub const RPL_SASLMECHS: &str = "908";
/// `<nick> <target> <account> :is logged in as` (WHOIS).
pub const RPL_WHOISACCOUNT: &str = "330";
pub const RPL_YOURHOST: &str = "002";
pub const RPL_CREATED: &str = "003";
pub const RPL_MYINFO: &str = "004";
pub const RPL_ISUPPORT: &str = "005";
pub const RPL_UMODEIS: &str = "221";
pub const RPL_LUSERCLIENT: &str = "251";
pub const RPL_LUSEROP: &str = "252";
pub const RPL_LUSERCHANNELS: &str = "254";
pub const RPL_LUSERME: &str = "255";
pub const RPL_AWAY: &str = "301";
pub const RPL_USERHOST: &str = "302";
pub const RPL_ISON: &str = "303";
pub const RPL_UNAWAY: &str = "305";
pub const RPL_NOWAWAY: &str = "306";
pub const RPL_WHOISUSER: &str = "311";
pub const RPL_WHOISSERVER: &str = "312";
pub const RPL_WHOISOPERATOR: &str = "313";
pub const RPL_WHOWASUSER: &str = "314";
pub const RPL_ENDOFWHO: &str = "315";
pub const RPL_WHOISIDLE: &str = "317";
pub const RPL_ENDOFWHOIS: &str = "318";
pub const RPL_WHOISCHANNELS: &str = "319";
pub const RPL_LISTSTART: &str = "321";
pub const RPL_LIST: &str = "322";
pub const RPL_LISTEND: &str = "323";
pub const RPL_CHANNELMODEIS: &str = "324";
pub const RPL_CREATIONTIME: &str = "329";
pub const RPL_NOTOPIC: &str = "331";
pub const RPL_TOPIC: &str = "332";
pub const RPL_INVITING: &str = "341";
pub const RPL_VERSION: &str = "351";
pub const RPL_WHOREPLY: &str = "352";
pub const RPL_NAMREPLY: &str = "353";
pub const RPL_ENDOFNAMES: &str = "366";
pub const RPL_BANLIST: &str = "367";
pub const RPL_ENDOFBANLIST: &str = "368";
pub const RPL_ENDOFWHOWAS: &str = "369";
pub const RPL_INFO: &str = "371";
pub const RPL_MOTD: &str = "372";
pub const RPL_ENDOFINFO: &str = "374";
pub const RPL_MOTDSTART: &str = "375";
pub const RPL_ENDOFMOTD: &str = "376";
pub const RPL_YOUREOPER: &str = "381";
pub const RPL_TIME: &str = "391";
pub const ERR_NOSUCHNICK: &str = "401";
pub const ERR_NOSUCHCHANNEL: &str = "403";
pub const ERR_CANNOTSENDTOCHAN: &str = "404";
pub const ERR_TOOMANYCHANNELS: &str = "405";
pub const ERR_WASNOSUCHNICK: &str = "406";
pub const ERR_NOORIGIN: &str = "409";
pub const ERR_TOOMANYTARGETS: &str = "407";
pub const ERR_NORECIPIENT: &str = "411";
pub const ERR_NOTEXTTOSEND: &str = "412";
pub const ERR_INPUTTOOLONG: &str = "417";
pub const ERR_UNKNOWNCOMMAND: &str = "421";
pub const ERR_NOMOTD: &str = "422";
pub const ERR_NONICKNAMEGIVEN: &str = "431";
pub const ERR_ERRONEUSNICKNAME: &str = "432";
pub const ERR_NICKNAMEINUSE: &str = "433";
/// A nickname that cannot be had just now (a node of a cluster cut off
/// from it).
pub const ERR_UNAVAILRESOURCE: &str = "437";
pub const ERR_USERNOTINCHANNEL: &str = "441";
pub const ERR_NOTONCHANNEL: &str = "442";
pub const ERR_USERONCHANNEL: &str = "443";
pub const ERR_NOTREGISTERED: &str = "451";
pub const ERR_NEEDMOREPARAMS: &str = "461";
pub const ERR_ALREADYREGISTERED: &str = "462";
pub const ERR_PASSWDMISMATCH: &str = "464";
pub const ERR_YOUREBANNEDCREEP: &str = "465";
pub const ERR_CHANNELISFULL: &str = "471";
pub const ERR_UNKNOWNMODE: &str = "472";
pub const ERR_INVITEONLYCHAN: &str = "473";
pub const ERR_BANNEDFROMCHAN: &str = "474";
pub const ERR_BADCHANNELKEY: &str = "475";
pub const ERR_BADCHANMASK: &str = "476";
pub const ERR_NOPRIVILEGES: &str = "481";
pub const ERR_CHANOPRIVSNEEDED: &str = "482";
pub const ERR_UMODEUNKNOWNFLAG: &str = "501";
pub const ERR_USERSDONTMATCH: &str = "502";
pub const ERR_HELPNOTFOUND: &str = "524";
pub const RPL_HELPSTART: &str = "704";
pub const RPL_HELPTXT: &str = "705";
pub const RPL_ENDOFHELP: &str = "706";
pub const ERR_INVALIDCAPCMD: &str = "410";
pub const ERR_INVALIDMODEPARAM: &str = "696";

/// The numeric that answers an error, where IRC has one; the others
/// become a server NOTICE (or, for the ones that end the connection,
/// `ERROR`).
pub fn for_error(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::LineTooLong => ERR_INPUTTOOLONG,
        ErrorCode::UnknownCommand => ERR_UNKNOWNCOMMAND,
        ErrorCode::BadSyntax => ERR_NEEDMOREPARAMS,
        ErrorCode::BadNick => ERR_ERRONEUSNICKNAME,
        ErrorCode::NickTaken => ERR_NICKNAMEINUSE,
        ErrorCode::BadRoom => ERR_NOSUCHCHANNEL,
        ErrorCode::TooManyRooms => ERR_TOOMANYCHANNELS,
        ErrorCode::InviteOnly => ERR_INVITEONLYCHAN,
        ErrorCode::Banned => ERR_BANNEDFROMCHAN,
        ErrorCode::NoSuchNick => ERR_NOSUCHNICK,
        ErrorCode::NotInRoom => ERR_USERNOTINCHANNEL,
        ErrorCode::AlreadyInRoom => ERR_USERONCHANNEL,
        ErrorCode::PermissionDenied => ERR_CHANOPRIVSNEEDED,
        ErrorCode::BadCredentials => ERR_PASSWDMISMATCH,
        ErrorCode::Muted => ERR_CANNOTSENDTOCHAN,
        ErrorCode::RoomFull => ERR_CHANNELISFULL,
        ErrorCode::BadKey => ERR_BADCHANNELKEY,
        ErrorCode::NotRegistered => ERR_NOTREGISTERED,
        ErrorCode::UnknownMode => ERR_UNKNOWNMODE,
        ErrorCode::Unavailable => ERR_UNAVAILRESOURCE,
        _ => return None,
    })
}

/// Errors that end the connection: IRC says them with `ERROR`.
pub fn is_fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Flooding
            | ErrorCode::IdleTimeout
            | ErrorCode::ServerFull
            | ErrorCode::TooManyConnections
    )
}
