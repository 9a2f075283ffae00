"""The test helper that finds permission denials in logs finds them, and only them."""

from denials import first_denial


def test_rbac_and_owner_reference_refusals_are_denials() -> None:
    rbac = ('kopf: (403) Forbidden: deployments.apps "rrm-bge" is forbidden: User '
            '"system:serviceaccount:kr:op" cannot patch resource "deployments"')
    owner = ("cannot set blockOwnerDeletion if an ownerReference refers to a resource you "
             "can't set finalizers on")
    for line in (rbac, owner, "attempting to set an ownerRef: not enough permissions"):
        found = first_denial(f"2026-11-27 12:00:00,100 start\n{line}\n")
        assert found is not None and line in found


def test_milliseconds_and_a_terminating_namespace_are_no_denials() -> None:
    logs = ("2026-11-27 12:00:00,403 applied rrm-bge\n"
            'namespaces "t1" is forbidden: unable to create new content in namespace t1 '
            "because it is being terminated\n")
    assert first_denial(logs) is None
