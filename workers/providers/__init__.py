"""Push providers: APNs, FCM and the sandbox, behind one small interface."""
