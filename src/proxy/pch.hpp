#pragma once
// Precompiled for the I/O translation units only: Beast/Asio dominate their compile time.
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
