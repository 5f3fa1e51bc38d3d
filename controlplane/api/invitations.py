"""Invitations: an owner or admin invites an email address; the invitee redeems the token once.

The token (``bk_inv_…``) travels only in the email; the database keeps its peppered hash,
which a secret-key rotation cannot move (no plaintext to re-hash): a previous key keeps
redeeming it until it expires.
Redeeming is a single conditional update, so two simultaneous redemptions cannot both win.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from controlplane import mail
from controlplane.api.fields import Email, Name, Password
from controlplane.api.members import Member
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Auth, Call, Operation
from controlplane.audit import Actor
from controlplane.auth.keys import INVITATION_TOKEN_PREFIX, generate_secret
from controlplane.auth.passwords import hash_password_async
from controlplane.auth.peppers import PepperRing
from controlplane.auth.permissions import Permission, can_assign
from controlplane.errors import InvalidRequest, PermissionDenied
from controlplane.models import Invitation as InvitationRow
from controlplane.models import Membership, Role, User

InvitationStatus = Literal["pending", "accepted", "revoked", "expired"]


class Invitation(BaseModel):
    object: Literal["invitation"] = "invitation"
    id: str
    organization_id: str
    email: str
    role: Role
    status: InvitationStatus
    invited_by: str | None
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: InvitationRow) -> Invitation:
        status: InvitationStatus
        if row.accepted_at is not None:
            status = "accepted"
        elif row.revoked_at is not None:
            status = "revoked"
        elif row.expires_at <= datetime.now(UTC):
            status = "expired"
        else:
            status = "pending"
        return cls(
            id=row.id,
            organization_id=row.organization_id,  # type: ignore[attr-defined]
            email=row.email,
            role=row.role,
            status=status,
            invited_by=row.invited_by_id,  # type: ignore[attr-defined]
            expires_at=row.expires_at,
            accepted_at=row.accepted_at,
            revoked_at=row.revoked_at,
            created_at=row.created_at,
        )


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    role: Role = Role.DEVELOPER


class InvitationListQuery(ListQuery):
    status: InvitationStatus | None = Field(
        default=None, description="Only invitations in this status (`pending`: still usable)."
    )


class InvitationAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=128)
    name: Name | None = None
    password: Password | None = Field(
        default=None, description="Required when the email has no account yet."
    )


class AcceptedInvitation(BaseModel):
    object: Literal["accepted_invitation"] = "accepted_invitation"
    member: Member
    organization_id: str
    user_created: bool


async def list_invitations(call: Call) -> Page[Invitation]:
    params = call.query_as(InvitationListQuery)
    query = call.tenant.query(InvitationRow)
    now = datetime.now(UTC)
    if params.status == "accepted":
        query = query.filter(accepted_at__isnull=False)
    elif params.status == "revoked":
        query = query.filter(accepted_at__isnull=True, revoked_at__isnull=False)
    elif params.status == "expired":
        query = query.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lte=now)
    elif params.status == "pending":
        query = query.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
    return await paginate(query, params, Invitation.of)


async def create_invitation(call: Call) -> Invitation:
    body = call.body_as(InvitationCreate)
    tenant = call.tenant
    assert tenant.role is not None
    if not can_assign(tenant.role, None, body.role):
        raise PermissionDenied(
            "Only owners can invite owners.", code="insufficient_role", param="role"
        )
    if await tenant.query(Membership).filter(user__email=body.email).exists():
        raise InvalidRequest(
            f"{body.email} is already a member.", code="already_member", param="email"
        )
    keyring = call.keyring
    now = datetime.now(UTC)
    await (
        tenant.query(InvitationRow)
        .filter(email=body.email, accepted_at__isnull=True, revoked_at__isnull=True)
        .update(revoked_at=now)
    )
    issued = generate_secret(INVITATION_TOKEN_PREFIX, call.settings.require_secret_key())
    row = await InvitationRow.create(
        organization=tenant.organization,
        email=body.email,
        role=body.role,
        token_hash=issued.key_hash,
        pepper_id=issued.pepper_id,
        invited_by=call.user,
        expires_at=now + timedelta(hours=call.settings.invitation_lifetime_hours),
    )
    await call.audit(
        "invitation.created",
        target_type="invitation",
        target_id=row.id,
        email=row.email,
        role=row.role.value,
    )
    base_url = call.settings.public_base_url.rstrip("/")
    link = f"{base_url}/dashboard/accept-invitation#{issued.plaintext}"
    email = mail.Email(
        to=row.email,
        subject=f"You are invited to {tenant.organization.name} on Brik Cloud",
        body=(
            f"{call.user.name or call.user.email} invited you to join "
            f"{tenant.organization.name} as {row.role.value}.\n\n"
            f"Accept the invitation: {link}\n\n"
            f'Or with the API: POST /v1/invitations/accept {{"token": "{issued.plaintext}"}}\n'
            f"The invitation expires at {row.expires_at.isoformat()}."
        ),
        kind="invitation",
        organization_id=tenant.organization.id,
    )
    sender = call.request.app.state.mail_sender

    async def deliver() -> None:
        await mail.send(email, sender, keyring)

    call.after_commit.append(deliver)
    return Invitation.of(row)


async def retrieve_invitation(call: Call) -> Invitation:
    return Invitation.of(call.row(InvitationRow, "invitation_id"))


async def revoke_invitation(call: Call) -> Invitation:
    row = call.row(InvitationRow, "invitation_id")
    if row.accepted_at is None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await row.save(update_fields=["revoked_at"])
        await call.audit(
            "invitation.revoked", target_type="invitation", target_id=row.id, email=row.email
        )
    return Invitation.of(row)


_UNUSABLE = "This invitation is invalid, expired, withdrawn or already used."


async def accept_invitation(call: Call) -> AcceptedInvitation:
    body = call.body_as(InvitationAccept)
    now = datetime.now(UTC)
    # Under the current secret key or a previous one: an invitation cannot be re-hashed (its
    # token is only in the email), so it is honoured under a previous key until it expires.
    hashes = PepperRing.from_settings(call.settings).hashes(body.token)
    row = await InvitationRow.filter(token_hash__in=hashes).select_related("organization").first()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise InvalidRequest(_UNUSABLE, code="invitation_unusable", param="token")
    claimed = await InvitationRow.filter(id=row.id, accepted_at__isnull=True).update(
        accepted_at=now
    )
    if claimed != 1:
        raise InvalidRequest(_UNUSABLE, code="invitation_unusable", param="token")
    user = await User.get_or_none(email=row.email)
    user_created = user is None
    if user is None:
        if body.password is None and not call.settings.oidc_enabled:
            raise InvalidRequest(
                "Choose a password for your new account.",
                code="parameter_missing",
                param="password",
            )
        user = await User.create(
            email=row.email,
            name=body.name or "",
            password_hash=await hash_password_async(body.password) if body.password else None,
        )
    organization_id = row.organization.id
    membership, created = await Membership.get_or_create(
        organization_id=organization_id, user=user, defaults={"role": row.role}
    )
    await InvitationRow.filter(id=row.id).update(accepted_by_id=user.id)
    actor = Actor.user(user)
    if user_created:
        await call.audit(
            "user.created", actor=actor, target_type="user", target_id=user.id, via="invitation"
        )
    await call.audit(
        "invitation.accepted",
        actor=actor,
        organization_id=organization_id,
        target_type="invitation",
        target_id=row.id,
    )
    if created:
        await call.audit(
            "member.added",
            actor=actor,
            organization_id=organization_id,
            target_type="user",
            target_id=user.id,
            role=membership.role.value,
        )
    membership.user = user
    return AcceptedInvitation(
        member=Member.of(membership), organization_id=organization_id, user_created=user_created
    )


INVITATIONS = "/v1/organizations/{organization_id}/invitations"
INVITATION = INVITATIONS + "/{invitation_id}"
operations = [
    Operation(
        "GET",
        INVITATIONS,
        list_invitations,
        "List invitations",
        "Invitations",
        permission=Permission.INVITATIONS_MANAGE,
        query=InvitationListQuery,
        response=Page[Invitation],
    ),
    Operation(
        "POST",
        INVITATIONS,
        create_invitation,
        "Invite someone by email (earlier pending invitations to them are withdrawn)",
        "Invitations",
        permission=Permission.INVITATIONS_MANAGE,
        body=InvitationCreate,
        response=Invitation,
        status_code=201,
        description="Inviting someone who is already a member is a 400 `already_member`.",
    ),
    Operation(
        "GET",
        INVITATION,
        retrieve_invitation,
        "Retrieve an invitation",
        "Invitations",
        permission=Permission.INVITATIONS_MANAGE,
        response=Invitation,
    ),
    Operation(
        "DELETE",
        INVITATION,
        revoke_invitation,
        "Withdraw an invitation",
        "Invitations",
        permission=Permission.INVITATIONS_MANAGE,
        response=Invitation,
    ),
    Operation(
        "POST",
        "/v1/invitations/accept",
        accept_invitation,
        "Redeem an invitation token (creates the account if the email has none)",
        "Invitations",
        auth=Auth.NONE,
        body=InvitationAccept,
        response=AcceptedInvitation,
        description="A token that is unknown, expired, withdrawn or already used is a 400 "
        "`invitation_unusable`.",
    ),
]
