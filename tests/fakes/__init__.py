"""Small local fakes of cloud services that speak their documented wire formats."""
