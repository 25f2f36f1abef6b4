"""Recovery drills: break a throwaway sandbox, recover with a playbook, verify, measure; drill history."""
