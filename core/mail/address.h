/*
 * address.h - RFC 5322 section 3.4 addresses, host names and RFC 2047
 * encoded-words.  The calls are declared where their users see them:
 * as_address_list_parse(), as_domain_normalize() and as_from_status_name()
 * in authscan/plugin.h, as_message_from() and as_decode_encoded_words() in
 * message.h.  This header only states the limits and the liberal choices.
 *
 * What the address-list parser accepts beyond RFC 5322 section 3.4 (all of
 * it seen in real mail, none of it ambiguous):
 *   - the obsolete syntax of section 4.4: obs-route "<@a,@b:u@h>", CFWS
 *     around the dots of local parts and domains, empty list elements
 *     ("a@b,,c@d," - so an empty or blank list is a list of no mailbox);
 *   - dots in display names ("John Q. Public <j@x>");
 *   - consecutive or leading dots in local parts ("a..b@docomo.ne.jp");
 *   - UTF-8 in atoms and quoted strings (RFC 6532);
 *   - encoded-words inside quoted display names;
 *   - a group whose ';' is missing at the end of the input;
 *   - ';' as a separator between addresses outside a group (Outlook);
 *   - an addr-spec used as display name ("j@x.com <j@x.com>"): the angle
 *     address is the address, as every MUA reads it;
 *   - "<>" and "<user>" (no domain): kept as mailboxes whose domain is
 *     NULL, so that the caller can tell "no domain" from "unparseable".
 * It refuses (returns -1) phrases with no address, unbalanced quotes,
 * comments, brackets and domain literals, control characters outside
 * comments, a local part of several words without dots ("John Smith@x"),
 * groups inside groups, and anything left over after an address.
 *
 * A domain that parses but is not a valid host name (e.g. "a..b", "ex$mple")
 * gives a mailbox with domain NULL; a domain literal keeps "[...]" lower
 * cased in domain with AS_MAILBOX_DOMAIN_LITERAL set.  addr is
 * local_part "@" domain as written (no CFWS, quotes removed).
 */
#ifndef AS_ADDRESS_H
#define AS_ADDRESS_H

#define AS_ADDR_MAX_LEN (64 * 1024)   /* bytes of one address-list */
#define AS_ADDR_MAX_BOXES 1000        /* mailboxes in one address-list */
#define AS_ADDR_MAX_COMMENT_DEPTH 32  /* nested comments */
#define AS_DOMAIN_MAX_INPUT 1024      /* bytes given to as_domain_normalize */

#endif
