"""Sign-in with Microsoft Entra ID: MSAL auth-code flow, id_token validation, role/team sync."""
