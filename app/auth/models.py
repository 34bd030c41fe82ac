from datetime import datetime

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class ApiKey(Base):
    """A key a warehouse system presents as `Authorization: Bearer <key>`.

    Only a SHA-256 hash of the key is stored; `prefix` is the public part used
    to find the row before the hash is compared in constant time.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    # Connection management, retries and webhook events need an admin key.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # The connections the key may see; None means all of them.
    connection_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def scope(self) -> frozenset[str] | None:
        return None if self.connection_ids is None else frozenset(self.connection_ids)
