"""``consentctl``: the command that drives both services (``dev`` runs the whole stack,
``serve``, ``migrate``, operator commands). It may import both services' public entry
points; neither service imports it or the other."""
