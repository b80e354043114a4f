"""Filters of the breach response: revocation steps for the incident record (names, never values), and the public
key of a solana-keygen keypair."""

from __future__ import annotations

from ansible_collections.mojorust.dr.plugins.module_utils.wallet import keypair_pubkey


def revocation_step(result: dict) -> dict:
    """One API revocation (a uri loop result) as a step of the incident record."""
    secret, status = result.get("item", {}), result.get("status", -1)
    done = status in (200, 201, 204)
    return {
        "name": secret.get("name"),
        "provider": secret.get("provider"),
        "method": "api",
        "done": done,
        "detail": f"HTTP {status}" if status != -1 else (result.get("msg") or "no answer"),
    }


def manual_step(secret: dict, confirmed: list) -> dict:
    """One manual revocation: done only when the operator confirmed it."""
    done = secret.get("name") in confirmed
    return {
        "name": secret.get("name"),
        "provider": secret.get("provider"),
        "method": "manual",
        "done": done,
        "detail": ("confirmed by the operator: " if done else "OPEN, not confirmed: ") + secret.get("how", ""),
    }


def wallet_steps(transfer: dict, new_pubkey: str) -> list:
    """What is still to do by hand with the old wallet, as steps of the incident record: its funds when the transfer
    was not confirmed on chain (with the node's reason), and every SPL token account holding tokens (a System Program
    transfer cannot move them)."""
    if not transfer or transfer.get("skipped"):
        return []
    old = transfer.get("pubkey", "")
    steps = []
    if transfer.get("failed"):
        # the node did not answer (or refused): nothing is known of the balance, the whole transfer is open
        steps.append(
            {
                "name": "WALLET_TRANSFER",
                "provider": "Solana",
                "method": "manual",
                "done": False,
                "detail": f"OPEN: move every lamport and token of the old wallet {old or '(see the vault)'} to "
                f"{new_pubkey}; the RPC node failed: {transfer.get('msg', 'no answer')}",
            }
        )
        return steps
    if not transfer.get("confirmed") and int(transfer.get("lamports") or 0) > 0:
        why = transfer.get("error") or "not sent (key_rotation_send_transfer=false)"
        steps.append(
            {
                "name": "WALLET_TRANSFER",
                "provider": "Solana",
                "method": "manual",
                "done": False,
                "detail": f"OPEN: move {transfer['lamports']} lamports from {old} to {new_pubkey}: {why}",
            }
        )
    for account in transfer.get("token_accounts") or []:
        if int(account.get("amount", 0)) > 0:
            amount = int(account["amount"]) / 10 ** int(account.get("decimals", 0))
            steps.append(
                {
                    "name": f"SPL_TOKEN_{account['mint']}",
                    "provider": "Solana",
                    "method": "manual",
                    "done": False,
                    "detail": (
                        f"OPEN: move {amount:g} of token {account['mint']} (account {account['pubkey']}) to the new "
                        f"wallet {new_pubkey}, e.g. spl-token transfer --fund-recipient {account['mint']} ALL "
                        f"{new_pubkey} --owner <old keypair>"
                    ),
                }
            )
    return steps


def unchanged_secrets(new: dict, current: dict) -> list:
    """Names whose new value is the stolen one."""
    return sorted(name for name, value in new.items() if current.get(name) == value)


class FilterModule:
    def filters(self) -> dict:
        return {
            "revocation_step": revocation_step,
            "manual_step": manual_step,
            "unchanged_secrets": unchanged_secrets,
            "wallet_steps": wallet_steps,
            "wallet_pubkey": keypair_pubkey,
        }
