"""The registry's certificate and htpasswd line as Pulumi dynamic resources: made once, an unchanged input diffs
empty (no re-issue, no new salt), a rotated CA, new names, a near end or a new password replace them."""

from __future__ import annotations

import datetime as dt

from infra.issued_certificate import HtpasswdProvider, IssuedCertificateProvider, htpasswd_matches
from renderlab.lab import lab_ca
from renderlab.lab.cluster_names import REGISTRY_USER

SANS = ["127.0.0.1", "10.20.0.11", "registry.renderlab-registry.svc"]


def test_the_certificate_is_issued_once_and_kept_until_it_no_longer_fits(monkeypatch):
    ca = lab_ca.new_ca()
    provider = IssuedCertificateProvider()
    props = {"ca": ca, "name": "registry", "sans": SANS}
    made = provider.create(props).outs
    assert lab_ca.still_good(ca, made["cert"], made["key"], SANS)
    assert not provider.diff("id", made, props).changes  # pulumi up again: empty diff
    assert not provider.diff("id", made, {**props, "sans": SANS[::-1]}).changes
    for why, news in {
        "a rotated CA": {**props, "ca": lab_ca.new_ca()},
        "a new name": {**props, "sans": [*SANS, "10.20.0.12"]},
    }.items():
        d = provider.diff("id", made, news)
        assert d.changes and d.replaces, why
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=lab_ca.CERT_DAYS - 5)
    monkeypatch.setattr(lab_ca, "_now", lambda: late)
    assert provider.diff("id", made, props).replaces  # near its end: renewed by the next `pulumi up`


def test_the_htpasswd_line_is_bcrypt_and_kept_while_the_password_matches():
    provider = HtpasswdProvider()
    props = {"user": "renderlab", "password": "pw-one"}
    made = provider.create(props).outs
    user, _, hashed = made["line"].partition(":")
    assert user == "renderlab" and hashed.startswith("$2b$") and "pw-one" not in made["line"]
    assert htpasswd_matches(made["line"], "renderlab", "pw-one")
    assert not provider.diff("id", made, props).changes
    assert provider.diff("id", made, {**props, "password": "pw-two"}).replaces
    assert provider.diff("id", made, {**props, "user": "other"}).replaces
    assert not htpasswd_matches("garbage", "renderlab", "pw-one")


def test_the_cluster_lanes_registry_values_fill_every_registry_input():
    from infra import manifests
    from infra.issued_certificate import registry_values

    ca = lab_ca.new_ca()
    values = registry_values(SANS, ca, "pw", REGISTRY_USER)
    assert set(values) == set(manifests.REGISTRY_INPUTS)
    assert lab_ca.still_good(ca, values["registry_tls_crt"], values["registry_tls_key"], SANS)
    assert htpasswd_matches(values["registry_htpasswd"], REGISTRY_USER, "pw")
