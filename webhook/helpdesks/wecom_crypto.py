"""企业微信's callback protocol (what its WXBizMsgCrypt samples implement): signature and AES body.

Every callback request carries ``msg_signature`` = hex SHA1 of the sorted, concatenated token,
timestamp, nonce and ciphertext. The ciphertext is base64 of AES-256-CBC with the key
``base64decode(EncodingAESKey + "=")``, the IV its first 16 bytes, PKCS#7 padding to 32-byte
blocks, over ``16 random bytes + 4-byte big-endian length + message + receiveid`` (the corp id).
Reference: https://developer.work.weixin.qq.com/document/path/90968 (加解密方案说明).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# The protocol pads to 32 bytes, not AES's 16-byte block.
_PADDING_BITS = 256
_RANDOM_BYTES = 16


class CryptoError(ValueError):
    """A ciphertext that does not decrypt to a message for this corp."""


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key an EncodingAESKey (43 base64 characters) stands for."""
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as error:
        raise ValueError(f"EncodingAESKey is not base64: {error}") from None
    if len(encoding_aes_key) != 43 or len(key) != 32:
        raise ValueError("EncodingAESKey must be 43 base64 characters (a 32-byte key)")
    return key


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """``msg_signature``: hex SHA1 over the four values sorted as strings and joined."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def decrypt(key: bytes, encrypted: str, receive_id: str) -> bytes:
    """The message inside ``encrypted``; :class:`CryptoError` unless it was sealed for ``receive_id``."""
    try:
        sealed = base64.b64decode(encrypted, validate=True)
    except binascii.Error:
        raise CryptoError("ciphertext is not base64") from None
    if not sealed or len(sealed) % 16:
        raise CryptoError("ciphertext is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    unpadder = padding.PKCS7(_PADDING_BITS).unpadder()
    try:
        plain = unpadder.update(decryptor.update(sealed) + decryptor.finalize()) + unpadder.finalize()
    except ValueError:
        raise CryptoError("ciphertext does not decrypt under this EncodingAESKey") from None
    if len(plain) < _RANDOM_BYTES + 4:
        raise CryptoError("decrypted message is too short")
    (length,) = struct.unpack(">I", plain[_RANDOM_BYTES:_RANDOM_BYTES + 4])
    message = plain[_RANDOM_BYTES + 4:_RANDOM_BYTES + 4 + length]
    if len(message) != length or plain[_RANDOM_BYTES + 4 + length:] != receive_id.encode():
        raise CryptoError("message was not sealed for this corp id")
    return message


def encrypt(key: bytes, message: bytes, receive_id: str, random: bytes | None = None) -> str:
    """``message`` sealed as 企业微信 seals it (what a stand-in of its servers sends)."""
    random = os.urandom(_RANDOM_BYTES) if random is None else random
    plain = random + struct.pack(">I", len(message)) + message + receive_id.encode()
    padder = padding.PKCS7(_PADDING_BITS).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    padded = padder.update(plain) + padder.finalize()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()
