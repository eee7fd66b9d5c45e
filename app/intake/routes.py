from flask import Blueprint

bp = Blueprint("intake", __name__, template_folder="templates")
