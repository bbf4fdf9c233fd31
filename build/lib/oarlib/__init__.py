"""What Orpheus and ADAGE need of OAR: oar.conf, its database, Almighty, the test bed."""
